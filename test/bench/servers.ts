// Starting and stopping the servers under test as child processes: each gets its own process
// (and so its own event loop), pinned to the servers' CPU when the run is pinned (pinning.ts),
// while autocannon runs in the benchmark's process.

import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Pinning, allowedCpus, pinnedCommand, serverCommand } from './pinning.js'

const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000
/** USER_HZ: 100 on every mainstream Linux build; `getconf CLK_TCK` says so on this machine. */
const CLOCK_TICKS = 100

export interface ServerSpec {
  name: string
  /** The program to run; default node (this process's own binary). */
  program?: string
  /** argv after `node` (or after `program`). */
  args: string[]
  /** Answers 200 once the server takes traffic; default /readyz (Grace's and the roof's). */
  readyPath?: string
  /** Where the child's stdout goes: a file (Grace's request log) or nowhere (the roof logs nothing). */
  stdoutFile?: string
  /** Kept in a file so a crash can be explained after the fact. */
  stderrFile?: string
  /** Where the server runs: under taskset on the servers' CPU when pinned. */
  pinning: Pinning
  /** How often the ready path is polled while starting; default 100 ms. */
  readyPollMs?: number
}

export interface RunningServer {
  name: string
  url: string
  /** The process id (the program's own: taskset execs it), or undefined if the spawn failed. */
  pid: number | undefined
  /** How the process exited, or undefined while it runs. */
  exited(): string | undefined
  /** SIGTERM, then SIGKILL if it does not exit in time. Resolves with how it exited. */
  stop(): Promise<string>
  /** Sends `signal` (e.g. SIGKILL, a crash), then SIGKILL if it does not exit in time. */
  kill(signal: NodeJS.Signals): Promise<string>
  /** The last lines of its stdout and stderr files, to explain a failure. */
  tails(): string
  /** CPU seconds (user + system, all threads) used so far; undefined where /proc is missing. */
  cpuSeconds(): number | undefined
  /**
   * The same for the main thread alone (node's event loop). The rest is V8's helper threads
   * (compiling, garbage collection), libuv's pool and LevelDB's compaction: a burst of theirs
   * shows as a gap between the two.
   */
  mainThreadCpuSeconds(): number | undefined
  /** The CPUs the process may run on, as the kernel says (proof of the pinning), or undefined. */
  cpus(): number[] | undefined
}

/** Ports freePort has handed out in this process: two servers must never be given the same one. */
const handedOut = new Set<number>()

/**
 * A port nothing listens on right now, and not one handed out before in this process (the
 * kernel may offer a port again once it is released, before its first taker binds it: a cluster
 * once got one port for a member's client side and another's peer side). Racy in principle
 * against other processes, fine on a benchmark machine.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer()
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
    const address = server.address()
    await new Promise((resolve) => server.close(resolve))
    if (address === null || typeof address === 'string') throw new Error('no port from listen(0)')
    if (handedOut.has(address.port)) continue
    handedOut.add(address.port)
    return address.port
  }
}

/** Spawns the server and resolves once GET /readyz answers 200; rejects if it exits first. */
export async function startServer(spec: ServerSpec, port: number): Promise<RunningServer> {
  const fds: number[] = []
  const fileOrIgnore = (path: string | undefined): number | 'ignore' => {
    if (path === undefined) return 'ignore'
    const fd = openSync(path, 'a')
    fds.push(fd)
    return fd
  }
  const command = spec.program === undefined ? serverCommand(spec.pinning, spec.args) : pinnedCommand(spec.pinning, spec.program, spec.args)
  const child = spawn(command.file, command.args, {
    stdio: ['ignore', fileOrIgnore(spec.stdoutFile), spec.stderrFile ? fileOrIgnore(spec.stderrFile) : 'inherit'],
  })
  // The child holds its own copies of the descriptors.
  for (const fd of fds) closeSync(fd)

  let exited: string | undefined
  const exit = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = signal ? `signal ${signal}` : `code ${code}`
      resolve(exited)
    })
  })
  live.set(child, exit)
  void exit.then(() => live.delete(child))
  const url = `http://127.0.0.1:${port}`
  try {
    await waitReady(url + (spec.readyPath ?? '/readyz'), () => exited, spec.readyPollMs ?? 100)
  } catch (err) {
    child.kill('SIGKILL')
    await exit
    throw new Error(`${spec.name} did not become ready: ${(err as Error).message}${tails(spec)}`)
  }
  const pid = child.pid
  return {
    name: spec.name,
    url,
    pid,
    exited: () => exited,
    stop: () => stopChild(child, exit),
    kill: (signal) => stopChild(child, exit, signal),
    tails: () => tails(spec),
    cpuSeconds: () => (pid === undefined ? undefined : procCpuSeconds(`/proc/${pid}/stat`)),
    mainThreadCpuSeconds: () => (pid === undefined ? undefined : procCpuSeconds(`/proc/${pid}/task/${pid}/stat`)),
    cpus: () => (pid === undefined ? undefined : allowedCpus(pid)),
  }
}

/** Every child started here that has not exited yet, ready or still starting. */
const live = new Map<ChildProcess, Promise<string>>()

/**
 * Stops every server this process started and has not seen exit, including any still starting
 * (which startServer has not handed out yet): for Ctrl-C in the middle of starting a cluster.
 */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map(([child, exit]) => stopChild(child, exit)))
}

async function waitReady(readyUrl: string, exited: () => string | undefined, pollMs: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  let last = 'no answer'
  while (Date.now() < deadline) {
    const how = exited()
    if (how !== undefined) throw new Error(`exited with ${how}`)
    try {
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(1_000) })
      await res.arrayBuffer()
      if (res.status === 200) return
      last = `GET ${new URL(readyUrl).pathname} answered ${res.status}`
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(pollMs)
  }
  throw new Error(`not ready after ${READY_TIMEOUT_MS} ms (${last})`)
}

async function stopChild(child: ChildProcess, exit: Promise<string>, signal: NodeJS.Signals = 'SIGTERM'): Promise<string> {
  if (child.exitCode !== null || child.signalCode !== null) return exit
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  const how = await exit
  clearTimeout(timer)
  return how
}

/**
 * From /proc/<pid>/stat (utime and stime, fields 14 and 15, in clock ticks). On a 2-core machine
 * the server's and autocannon's CPU use tell which side was the bottleneck.
 */
/** utime + stime of a /proc stat file (a process's, or one thread's under task/). */
function procCpuSeconds(statPath: string): number | undefined {
  try {
    const stat = readFileSync(statPath, 'utf8')
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return undefined
  }
}

function tails(spec: ServerSpec): string {
  return tail('stdout', spec.stdoutFile) + tail('stderr', spec.stderrFile)
}

function tail(label: string, path: string | undefined): string {
  if (path === undefined) return ''
  try {
    const text = readFileSync(path, 'utf8').trimEnd()
    return text ? `\n--- ${label} (last lines) ---\n${text.split('\n').slice(-20).join('\n')}` : ''
  } catch {
    return ''
  }
}
