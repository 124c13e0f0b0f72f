// Runs the real server (bin/grace.js) as a child process on a free port, for tests that need
// real sockets, signals and crashes.

import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'grace.js')
/** Generous: on a loaded 2-core machine, Node's start and LevelDB's open alone have taken 6 s. */
const START_TIMEOUT_MS = 30_000

export interface ServerProcess {
  readonly child: ChildProcess
  readonly url: string
  /** Every log line the server printed, parsed. */
  readonly logs: Record<string, unknown>[]
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>
}

export async function startServer(dataDir: string, extraArgs: string[] = []): Promise<ServerProcess> {
  const child = spawn(process.execPath, [BIN, '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Record<string, unknown>[] = []
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  // 'close', not 'exit': by then every line the server wrote has been read.
  const exited = new Promise<number | string>((resolve) => child.on('close', (code, signal) => resolve(code ?? signal ?? -1)))
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in ${START_TIMEOUT_MS / 1000} s: ${stderr}`)), START_TIMEOUT_MS)
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>
      try {
        entry = JSON.parse(line)
      } catch {
        return
      }
      logs.push(entry)
      if (entry.msg === 'grace is ready') {
        clearTimeout(timer)
        resolve(String(entry.address))
      }
    })
    void exited.then((code) => reject(new Error(`server exited (${code}) before it was ready: ${stderr}`)))
  })
  let url: string
  try {
    url = await ready
  } catch (err) {
    // A server that never became ready must not outlive the test.
    child.kill('SIGKILL')
    throw err
  }
  return { child, url, logs, exited }
}

/** fetch with a JSON body; answers the status and the parsed JSON body. */
export async function request(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method,
    headers: body !== undefined ? { 'content-type': 'application/json', ...headers } : headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
}
