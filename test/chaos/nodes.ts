// The chaos harness's Grace processes: started (inside their network namespaces, when there are
// any) from bin/grace.js, killed, paused, restarted on their data, and removed from and added
// back to the cluster. Every line a node logs goes to <results>/<id>.log.

import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, mkdirSync, rmSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChaosNetwork } from './network.js'

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'grace.js')
const READY_TIMEOUT_MS = 60_000
/** A status or admin call to a node that does not answer in this long counts as unanswered. */
const CALL_TIMEOUT_MS = 2_000

export interface ClusterStatus {
  role: string
  leaderId: string | null
  term: number
  commitIndex: number
  appliedIndex: number
  ready: boolean
  membership: { voters: string[]; learners: string[] }
}

interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<void>
  paused: boolean
}

export class ChaosNodes {
  private readonly running = new Map<string, Running>()
  private readonly logs = new Map<string, WriteStream>()
  readonly secret = `chaos-${Math.random().toString(36).slice(2)}-secret`

  constructor(
    private readonly net: ChaosNetwork,
    readonly ids: readonly string[],
    private readonly dataDir: string,
    private readonly logDir: string,
  ) {}

  url(id: string): string {
    const a = this.net.address(id)
    return `http://${a.host}:${a.clientPort}`
  }

  private members(): string {
    return this.ids.map((id) => `${id}=${this.net.address(id).host}:${this.net.address(id).peerPort}`).join(',')
  }

  isRunning(id: string): boolean {
    return this.running.has(id)
  }

  isPaused(id: string): boolean {
    return this.running.get(id)?.paused ?? false
  }

  /** Starts a node on its data directory and waits until it says it is ready. */
  async start(id: string, opts: { join?: boolean } = {}): Promise<void> {
    if (this.running.has(id)) throw new Error(`${id} is already running`)
    const a = this.net.address(id)
    const dir = join(this.dataDir, id)
    mkdirSync(dir, { recursive: true })
    const argv = [process.execPath, BIN, '--host', a.host, '--port', String(a.clientPort), '--data-dir', dir, '--node-id', id, '--members', this.members()]
    if (opts.join) argv.push('--join')
    const [cmd, ...args] = this.net.wrap(id, argv)
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRACE_CLUSTER_SECRET: this.secret } })
    const log = this.log(id)
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()))
    this.running.set(id, { child, exited, paused: false })
    void exited.then(() => {
      if (this.running.get(id)?.child === child) this.running.delete(id)
    })
    child.stderr!.on('data', (d) => log.write(`stderr: ${d}`))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${id} was not ready in ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS)
      createInterface({ input: child.stdout! }).on('line', (line) => {
        log.write(`${line}\n`)
        if (line.includes('"grace is ready"')) {
          clearTimeout(timer)
          resolve()
        }
      })
      void exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`${id} exited before it was ready (see ${id}.log)`))
      })
    })
  }

  private log(id: string): WriteStream {
    let log = this.logs.get(id)
    if (!log) this.logs.set(id, (log = createWriteStream(join(this.logDir, `${id}.log`), { flags: 'a' })))
    return log
  }

  async kill(id: string): Promise<void> {
    const r = this.running.get(id)
    if (!r) return
    r.child.kill('SIGKILL')
    await r.exited
  }

  pause(id: string): void {
    const r = this.running.get(id)
    if (!r || r.paused) return
    r.child.kill('SIGSTOP')
    r.paused = true
  }

  resume(id: string): void {
    const r = this.running.get(id)
    if (!r || !r.paused) return
    r.child.kill('SIGCONT')
    r.paused = false
  }

  wipe(id: string): void {
    if (this.running.has(id)) throw new Error(`${id} is running`)
    rmSync(join(this.dataDir, id), { recursive: true, force: true })
  }

  async status(id: string): Promise<ClusterStatus | null> {
    if (!this.running.has(id) || this.isPaused(id)) return null
    try {
      const res = await fetch(`${this.url(id)}/v1/cluster/status`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) })
      return res.ok ? ((await res.json()) as ClusterStatus) : null
    } catch {
      return null
    }
  }

  /** The leader that a majority of the running nodes agree on (highest term), or null. */
  async leader(): Promise<string | null> {
    const statuses = await Promise.all(this.ids.map((id) => this.status(id)))
    let best: { id: string; term: number } | null = null
    statuses.forEach((s, i) => {
      if (s?.role === 'leader' && (!best || s.term > best.term)) best = { id: this.ids[i]!, term: s.term }
    })
    return (best as { id: string } | null)?.id ?? null
  }

  /** Waits for a leader that every running node follows; throws after timeoutMs. */
  async settled(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const statuses = await Promise.all(this.ids.filter((id) => this.isRunning(id)).map((id) => this.status(id)))
      const leaders = new Set(statuses.map((s) => s?.leaderId ?? null))
      const leader = statuses.find((s) => s?.role === 'leader')
      if (leader && leaders.size === 1 && statuses.every((s) => s?.ready)) return [...leaders][0]!
      if (Date.now() > deadline) throw new Error(`no settled leader in ${timeoutMs / 1000} s: ${JSON.stringify(statuses)}`)
      await sleep(200)
    }
  }

  /** An admin call (membership) sent to `via`; answers the status and body. */
  async admin(via: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.url(via)}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.secret}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    })
    const text = await res.text()
    return { status: res.status, body: text ? JSON.parse(text) : undefined }
  }

  peerAddress(id: string): string {
    const a = this.net.address(id)
    return `${a.host}:${a.peerPort}`
  }

  async stopAll(): Promise<void> {
    for (const id of this.ids) this.resume(id)
    await Promise.all(this.ids.map((id) => this.kill(id)))
    await Promise.all([...this.logs.values()].map((l) => new Promise((r) => l.end(r))))
    this.logs.clear()
  }
}

