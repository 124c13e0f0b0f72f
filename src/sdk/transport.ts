// The SDK's HTTP transport: every request of a client goes through here. It keeps to one server
// while that server answers (so connections are reused), and on a network error, a timeout, a
// 503 or a full watch table moves on to the next server, up to maxAttempts servers per request.
// A server that failed is skipped for a cooldown while others are left. The list starts from the
// configured servers and grows with the members the cluster reports (GET /v1/cluster/members).
//
// Events: 'failover' ({ from, to, reason }) when a request moves to another server,
// 'unreachable' ({ reason }) when no server answered a request, 'reachable' ({ server }) on the
// first answer after that.

import { EventEmitter } from 'node:events'
import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { GraceClientError } from './errors.js'
import type { SdkLogger } from './logger.js'
import { MAX_SERVERS, serverUrl } from './options.js'

export interface RequestSpec {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  readonly path: string
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>
  readonly body?: unknown
  /** Per attempt. */
  readonly timeoutMs: number
  /** Cancels the request (and its retries). */
  readonly signal?: AbortSignal
}

export interface TransportOptions {
  readonly servers: readonly string[]
  readonly maxAttempts: number
  readonly logger: SdkLogger
  /** How long a failed server is passed over while others are left. Default 5000 ms. */
  readonly cooldownMs?: number
}

/** Answers that mean "try another server": this one cannot serve now. */
const RETRY_ELSEWHERE = new Set(['UNAVAILABLE', 'TOO_MANY_WATCHERS', 'TOO_MANY_LISTENERS'])

export class Transport extends EventEmitter {
  private readonly seeds: readonly string[]
  private learned: string[] = []
  private servers: string[]
  private current: number
  private readonly downUntil = new Map<string, number>()
  private readonly maxAttempts: number
  private readonly cooldownMs: number
  private readonly logger: SdkLogger
  private unreachable = false
  // Keep-alive connections of this client only, so that close() can let them go.
  private readonly agents = { http: new HttpAgent({ keepAlive: true, maxSockets: 64 }), https: new HttpsAgent({ keepAlive: true, maxSockets: 64 }) }

  constructor(opts: TransportOptions) {
    super()
    this.seeds = opts.servers
    this.servers = [...opts.servers]
    // A random start spreads many clients over the servers.
    this.current = Math.floor(Math.random() * this.servers.length)
    this.maxAttempts = opts.maxAttempts
    this.cooldownMs = opts.cooldownMs ?? 5000
    this.logger = opts.logger
  }

  /** The servers known now: the configured ones and those learned from the cluster. */
  knownServers(): readonly string[] {
    return this.servers
  }

  /** The server requests go to now. */
  currentServer(): string {
    return this.servers[this.current % this.servers.length]!
  }

  /** True after a request found no server, until one answers again. */
  get offline(): boolean {
    return this.unreachable
  }

  /** The answer's JSON; throws GraceClientError with the server's code, or NO_SERVER. */
  async request<T = unknown>(spec: RequestSpec): Promise<T> {
    let lastReason = 'no attempt'
    const attempts = Math.min(this.maxAttempts, Math.max(1, this.servers.length))
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (spec.signal?.aborted) throw new GraceClientError('CLOSED', 'request cancelled')
      const server = this.pick()
      let outcome: { ok: true; value: T } | { ok: false; reason: string }
      try {
        outcome = await this.attempt<T>(server, spec)
      } catch (err) {
        if (err instanceof GraceClientError) {
          this.answered(server)
          throw err
        }
        if (spec.signal?.aborted) throw new GraceClientError('CLOSED', 'request cancelled')
        outcome = { ok: false, reason: describe(err) }
      }
      if (outcome.ok) {
        this.answered(server)
        return outcome.value
      }
      lastReason = `${server}: ${outcome.reason}`
      this.failed(server, outcome.reason)
    }
    if (!this.unreachable) {
      this.unreachable = true
      this.logger.warn({ servers: this.servers, reason: lastReason }, 'grace: no server answered')
      this.emit('unreachable', { reason: lastReason })
    }
    throw new GraceClientError('NO_SERVER', `no Grace server answered ${spec.method} ${spec.path} (${attempts} tried; last: ${lastReason})`)
  }

  /**
   * Reads the members from the cluster and adds their client addresses. Tolerates the shapes a
   * node may answer: { voters, learners, addresses } alone (older nodes: peer addresses only,
   * nothing to learn), or with a `members` list whose entries carry a client address
   * (`clientAddress`; clientUrl, httpAddress or url are taken too). Members DOWN or not ready
   * are left out. Learned servers the cluster no longer lists are dropped; configured ones
   * always stay.
   */
  async refreshMembers(timeoutMs: number): Promise<readonly string[]> {
    const answer = await this.request<unknown>({ method: 'GET', path: '/v1/cluster/members', timeoutMs })
    const learned = clientAddressesOf(answer)
    if (learned === undefined) return this.servers
    const before = this.currentServer()
    this.learned = learned.filter((s) => !this.seeds.includes(s))
    this.servers = [...this.seeds, ...this.learned].slice(0, MAX_SERVERS)
    const at = this.servers.indexOf(before)
    this.current = at >= 0 ? at : 0
    return this.servers
  }

  private pick(): string {
    const now = Date.now()
    for (let i = 0; i < this.servers.length; i++) {
      const server = this.servers[(this.current + i) % this.servers.length]!
      if ((this.downUntil.get(server) ?? 0) <= now) {
        this.current = (this.current + i) % this.servers.length
        return server
      }
    }
    // Every server failed lately: try the one whose cooldown ends first.
    let best = this.current
    for (let i = 0; i < this.servers.length; i++) {
      if ((this.downUntil.get(this.servers[i]!) ?? 0) < (this.downUntil.get(this.servers[best]!) ?? 0)) best = i
    }
    this.current = best
    return this.servers[best]!
  }

  private failed(server: string, reason: string): void {
    this.downUntil.set(server, Date.now() + this.cooldownMs)
    if (this.servers.length < 2) return
    this.current = (this.servers.indexOf(server) + 1) % this.servers.length
    const to = this.pick()
    this.logger.warn({ from: server, to, reason }, 'grace: server failed, moving to another')
    this.emit('failover', { from: server, to, reason })
  }

  private answered(server: string): void {
    this.downUntil.delete(server)
    if (this.unreachable) {
      this.unreachable = false
      this.logger.info({ server }, 'grace: a server answers again')
      this.emit('reachable', { server })
    }
  }

  /**
   * Closes the connections this transport keeps open. Requests after it open new ones; a client
   * calls it once it is closed, so that its sockets do not hold the process (or a server's close).
   */
  destroy(): void {
    this.agents.http.destroy()
    this.agents.https.destroy()
  }

  private send(url: string, method: string, body: string | undefined, signal: AbortSignal): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const https = url.startsWith('https:')
      const headers: Record<string, string | number> = { accept: 'application/json' }
      if (body !== undefined) {
        headers['content-type'] = 'application/json'
        headers['content-length'] = Buffer.byteLength(body)
      }
      const req = (https ? httpsRequest : httpRequest)(url, { method, headers, agent: https ? this.agents.https : this.agents.http, signal }, (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (c: Buffer) => {
          size += c.length
          if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer over ${MAX_ANSWER_BYTES} bytes`))
          else chunks.push(c)
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  private async attempt<T>(server: string, spec: RequestSpec): Promise<{ ok: true; value: T } | { ok: false; reason: string }> {
    let url = `${server}${spec.path}`
    if (spec.query) {
      const q = new URLSearchParams()
      for (const [k, v] of Object.entries(spec.query)) if (v !== undefined) q.set(k, String(v))
      const s = q.toString()
      if (s) url += `?${s}`
    }
    const timeout = AbortSignal.timeout(spec.timeoutMs)
    const signal = spec.signal ? AbortSignal.any([spec.signal, timeout]) : timeout
    let res: { status: number; text: string }
    try {
      res = await this.send(url, spec.method, spec.body === undefined ? undefined : JSON.stringify(spec.body), signal)
    } catch (err) {
      if (timeout.aborted && !spec.signal?.aborted) return { ok: false, reason: `timed out after ${spec.timeoutMs} ms` }
      throw err
    }
    const text = res.text
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      // A proxy's HTML page, say: not Grace. Another server may be.
      return { ok: false, reason: `status ${res.status} with a body that is not JSON` }
    }
    if (res.status >= 200 && res.status < 300) return { ok: true, value: body as T }
    const code = typeof (body as { code?: unknown })?.code === 'string' ? (body as { code: string }).code : `HTTP_${res.status}`
    const message = typeof (body as { message?: unknown })?.message === 'string' ? (body as { message: string }).message : text.slice(0, 200)
    if (res.status >= 500 || RETRY_ELSEWHERE.has(code)) return { ok: false, reason: `${code}: ${message}` }
    throw new GraceClientError(code, message, res.status)
  }
}

/** Answers bigger than this are refused (a 50,000-instance list is about 20 MiB of JSON). */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024

function describe(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string }
  return e?.code ?? e?.message ?? String(err)
}

function clientAddressesOf(answer: unknown): string[] | undefined {
  if (answer === null || typeof answer !== 'object') return undefined
  const members = (answer as { members?: unknown }).members
  if (!Array.isArray(members)) return undefined
  const out: string[] = []
  for (const m of members) {
    if (m === null || typeof m !== 'object') continue
    const r = m as Record<string, unknown>
    // A member known to be down, or still loading, is no server to move to.
    if (r.state === 'DOWN' || r.ready === false) continue
    const address = [r.clientAddress, r.clientUrl, r.httpAddress, r.url].find((v) => typeof v === 'string')
    if (typeof address !== 'string') continue
    try {
      out.push(serverUrl(address))
    } catch {
      // A member with an address we cannot use is skipped, not fatal.
    }
  }
  return out.length > 0 ? [...new Set(out)] : undefined
}
