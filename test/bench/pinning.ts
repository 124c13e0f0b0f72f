// Core pinning: the load generator (autocannon, in the benchmark's own process) on one CPU, the
// server under test (roof or Grace, one at a time) on another. Unpinned, the scheduler moves the
// server, autocannon and their helper threads between the two cores of a small VM as it likes, and
// the same binary measured twice in a row gave 10k and 18k req/s. Pinned, each side has a core of
// its own, and the server's number no longer depends on where its threads happened to land.
//
// Needs Linux, `taskset` (util-linux) and at least two CPUs this process may use; without them the
// run goes on unpinned and the report says why. GRACE_BENCH_PIN=0 runs unpinned on purpose: every
// process on every core, to check that a result is not an artefact of the layout.

import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export interface Pinning {
  /** The CPU this process (autocannon) runs on, or undefined when not pinned. */
  clientCpu?: number
  /** The CPU every server under test is started on, or undefined when not pinned. */
  serverCpu?: number
  /** One line for the report: what was pinned where, or why nothing was. */
  note: string
}

/**
 * Pins this process, every thread it has now (libuv and V8 helpers included; threads started
 * later inherit the mask), to its first allowed CPU, and picks the second for the servers.
 * Changing our own affinity with `taskset -a -p` is simpler than re-executing the benchmark under
 * `taskset -c`: no second process, no signals or exit codes to forward.
 */
export function pinSelf(): Pinning {
  if (process.env.GRACE_BENCH_PIN === '0') return { note: 'not pinned: GRACE_BENCH_PIN=0' }
  if (process.platform !== 'linux') return { note: `not pinned: ${process.platform} is not Linux` }
  const allowed = allowedCpus('self')
  if (allowed === undefined) return { note: 'not pinned: /proc/self/status has no Cpus_allowed_list' }
  if (allowed.length < 2) return { note: `not pinned: only ${allowed.length} CPU available (${allowed.join(',')})` }
  const probe = spawnSync('taskset', ['--version'], { encoding: 'utf8' })
  if (probe.error) return { note: `not pinned: taskset not found (${(probe.error as NodeJS.ErrnoException).code ?? probe.error.message}; it comes with util-linux)` }
  const [clientCpu, serverCpu] = allowed
  const pin = spawnSync('taskset', ['-a', '-p', '-c', String(clientCpu), String(process.pid)], { encoding: 'utf8' })
  const now = allowedCpus('self')
  if (pin.status !== 0 || now === undefined || now.length !== 1 || now[0] !== clientCpu) {
    return { note: `not pinned: taskset -a -p -c ${clientCpu} failed (${(pin.stderr || `exit ${pin.status}`).trim()})` }
  }
  return {
    clientCpu,
    serverCpu,
    note: `autocannon (the benchmark process) pinned to CPU ${clientCpu}, each server under test to CPU ${serverCpu} (taskset)`,
  }
}

/** argv that starts `node args...`, under taskset when the servers are pinned. */
export function serverCommand(pinning: Pinning, nodeArgs: string[]): { file: string; args: string[] } {
  return pinnedCommand(pinning, process.execPath, nodeArgs)
}

/** argv that starts `file args...` (any program, e.g. etcd), under taskset when the servers are pinned. */
export function pinnedCommand(pinning: Pinning, file: string, args: string[]): { file: string; args: string[] } {
  return pinning.serverCpu === undefined
    ? { file, args }
    : // taskset sets the mask and then execs the program, so the child's pid is the program's own.
      { file: 'taskset', args: ['-c', String(pinning.serverCpu), file, ...args] }
}

/** The CPUs a process may run on (`Cpus_allowed_list` of /proc/<pid>/status), or undefined. */
export function allowedCpus(pid: number | 'self'): number[] | undefined {
  try {
    const match = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    if (!match) return undefined
    const cpus: number[] = []
    for (const part of match[1].split(',')) {
      const [from, to] = part.split('-').map(Number)
      for (let cpu = from; cpu <= (to ?? from); cpu++) cpus.push(cpu)
    }
    return cpus
  } catch {
    return undefined
  }
}
