// What the naming and config clients of one process share: the resolved options, the transport
// (one server list, one failover state) and the refresh of the member list.

import { type ClientOptions, type ResolvedOptions, loadClientOptions, resolveOptions } from './options.js'
import { stderrLogger, type SdkLogger } from './logger.js'
import { Transport } from './transport.js'

export class Session {
  readonly options: ResolvedOptions
  readonly transport: Transport
  readonly logger: SdkLogger
  private memberTimer: NodeJS.Timeout | undefined
  private users = 0

  constructor(options: ClientOptions = {}) {
    this.options = resolveOptions(options)
    this.logger = this.options.logger ?? stderrLogger
    this.transport = new Transport({ servers: this.options.servers, maxAttempts: this.options.maxAttempts, logger: this.logger })
  }

  /** Options from a file (see loadClientOptions), overridden by those given. */
  static async fromFile(path?: string, overrides: ClientOptions = {}): Promise<Session> {
    return new Session({ ...(await loadClientOptions(path)), ...overrides })
  }

  /** A client starts using the session: the member list is refreshed while any does. */
  acquire(): void {
    if (this.users++ > 0 || this.options.memberRefreshMs === 0) return
    const refresh = (): void => {
      void this.transport.refreshMembers(this.options.requestTimeoutMs).catch(() => undefined)
    }
    refresh()
    this.memberTimer = setInterval(refresh, this.options.memberRefreshMs)
    this.memberTimer.unref()
  }

  release(): void {
    if (--this.users > 0) return
    this.users = 0
    if (this.memberTimer) clearInterval(this.memberTimer)
    this.memberTimer = undefined
    this.transport.destroy()
  }
}

/** Waits ms, or less if the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    timer.unref()
    function done(): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** Backoff after failure n (0-based): 100 ms doubling to 5 s, with jitter. */
export function backoffMs(n: number): number {
  const base = Math.min(5000, 100 * 2 ** Math.min(n, 6))
  return Math.round(base / 2 + Math.random() * (base / 2))
}
