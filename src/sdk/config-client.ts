// The config client: reads, publishes (with compare-and-set) and removes configs, and follows
// them. Every followed config travels in one long poll (POST /v1/cs/configs/listen) with the md5
// the client holds; a change answers it, the client reads the new content and calls the
// listeners. Every content read is kept as a local snapshot on disk: when no server answers,
// getConfig answers from it (with a warning in the log and a 'snapshot' event), and listeners
// keep their last content until a server is back.
//
// Events: 'change' (ConfigChangeEvent), 'snapshot' ({ dataId, group, savedAt }), 'failover',
// 'unreachable', 'reachable'.

import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { DiskCache } from './disk-cache.js'
import { GraceClientError } from './errors.js'
import type { ClientOptions } from './options.js'
import { Session, backoffMs, sleep } from './session.js'

export interface ConfigChangeEvent {
  readonly dataId: string
  readonly group: string
  /** null: the config was removed. */
  readonly content: string | null
  readonly md5: string
  readonly type: string
}

export type ConfigListener = (event: ConfigChangeEvent) => void

export interface ConfigRef {
  readonly group?: string
}

/** Configs one client follows at most (one listen carries up to 1000). */
export const MAX_LISTENED_CONFIGS = 1000

interface Followed {
  readonly key: string
  readonly dataId: string
  readonly group: string
  readonly listeners: Set<ConfigListener>
  md5: string
}

interface ConfigAnswer {
  content: string
  md5: string
  type: string
  revision?: number
}

export class ConfigClient {
  /** The client's events (above). */
  readonly events = new EventEmitter()
  readonly session: Session
  private readonly snapshots: DiskCache | undefined
  private readonly followed = new Map<string, Followed>()
  private listenAbort: AbortController | undefined
  private listening = false
  private closed = false
  private readonly stop = new AbortController()

  constructor(options: ClientOptions | Session = {}) {
    this.session = options instanceof Session ? options : new Session(options)
    const o = this.session.options
    this.snapshots = o.cacheDir === false ? undefined : new DiskCache(o.cacheDir, 'config', o.namespace, this.session.logger)
    for (const event of ['failover', 'unreachable', 'reachable'] as const) {
      const forward = (e: unknown): void => void this.events.emit(event, e)
      this.session.transport.on(event, forward)
      this.stop.signal.addEventListener('abort', () => this.session.transport.off(event, forward), { once: true })
    }
    this.session.acquire()
  }

  static async fromFile(path?: string, overrides: ClientOptions = {}): Promise<ConfigClient> {
    return new ConfigClient(await Session.fromFile(path, overrides))
  }

  /** The content, or null when the config does not exist. From the snapshot when no server answers. */
  async getConfig(dataId: string, ref: ConfigRef = {}): Promise<string | null> {
    return (await this.getConfigDetail(dataId, ref))?.content ?? null
  }

  /** Content with its md5 (for compare-and-set), type and revision; null when it does not exist. */
  async getConfigDetail(dataId: string, ref: ConfigRef = {}): Promise<ConfigAnswer | null> {
    this.checkOpen()
    const group = ref.group ?? this.session.options.group
    try {
      return await this.read(dataId, group)
    } catch (err) {
      if (!(err instanceof GraceClientError) || err.code !== 'NO_SERVER' || !this.snapshots) throw err
      const saved = await this.snapshots.read<ConfigAnswer | null>(keyOf(group, dataId))
      if (!saved) throw err
      this.session.logger.warn({ dataId, group, savedAt: new Date(saved.savedAt).toISOString() }, 'grace: no server answers; serving the config from the local snapshot')
      this.events.emit('snapshot', { dataId, group, savedAt: saved.savedAt })
      return saved.value
    }
  }

  /**
   * Publishes content. `casMd5`: only if the current md5 is that ("" = only if the config does
   * not exist); otherwise throws GraceClientError CAS_MISMATCH.
   */
  async publishConfig(dataId: string, content: string, opts: ConfigRef & { type?: string; casMd5?: string } = {}): Promise<{ md5: string; revision: number }> {
    this.checkOpen()
    const o = this.session.options
    return this.session.transport.request({
      method: 'POST',
      path: '/v1/cs/configs',
      body: { namespace: o.namespace, group: opts.group ?? o.group, dataId, content, ...(opts.type !== undefined ? { type: opts.type } : {}), ...(opts.casMd5 !== undefined ? { casMd5: opts.casMd5 } : {}) },
      timeoutMs: o.requestTimeoutMs,
    })
  }

  /** Removes a config (optionally only if its md5 is casMd5). Answers whether there was one. */
  async removeConfig(dataId: string, opts: ConfigRef & { casMd5?: string } = {}): Promise<boolean> {
    this.checkOpen()
    const o = this.session.options
    const answer = await this.session.transport.request<{ deleted?: boolean }>({
      method: 'DELETE',
      path: '/v1/cs/configs',
      query: { namespace: o.namespace, group: opts.group ?? o.group, dataId, ...(opts.casMd5 !== undefined ? { casMd5: opts.casMd5 } : {}) },
      timeoutMs: o.requestTimeoutMs,
    })
    return answer?.deleted === true
  }

  /**
   * Calls the listener on every change of the config from now on. Resolves once the current
   * md5 is known, with the current content (null: none), so that a caller can start from it.
   */
  async addListener(dataId: string, listener: ConfigListener, ref: ConfigRef = {}): Promise<string | null> {
    this.checkOpen()
    const group = ref.group ?? this.session.options.group
    const key = keyOf(group, dataId)
    let f = this.followed.get(key)
    const current = await this.getConfigDetail(dataId, { group })
    if (!f) {
      if (this.followed.size >= MAX_LISTENED_CONFIGS) throw new GraceClientError('BAD_OPTIONS', `a client follows at most ${MAX_LISTENED_CONFIGS} configs`)
      f = { key, dataId, group, listeners: new Set(), md5: current?.md5 ?? '' }
      this.followed.set(key, f)
      this.listenAbort?.abort()
      this.startListening()
    }
    f.listeners.add(listener)
    return current?.content ?? null
  }

  removeListener(dataId: string, listener: ConfigListener, ref: ConfigRef = {}): void {
    const key = keyOf(ref.group ?? this.session.options.group, dataId)
    const f = this.followed.get(key)
    if (!f) return
    f.listeners.delete(listener)
    if (f.listeners.size > 0) return
    this.followed.delete(key)
    this.listenAbort?.abort()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.stop.abort()
    this.listenAbort?.abort()
    this.session.release()
  }

  private async read(dataId: string, group: string): Promise<ConfigAnswer | null> {
    const o = this.session.options
    let answer: ConfigAnswer | null
    try {
      answer = await this.session.transport.request<ConfigAnswer>({ method: 'GET', path: '/v1/cs/configs', query: { namespace: o.namespace, group, dataId }, timeoutMs: o.requestTimeoutMs })
      if (typeof answer?.content !== 'string' || typeof answer.md5 !== 'string') throw new GraceClientError('BAD_ANSWER', 'the server\'s config is malformed')
      answer = { content: answer.content, md5: answer.md5, type: answer.type ?? 'text', ...(answer.revision !== undefined ? { revision: answer.revision } : {}) }
    } catch (err) {
      if (!(err instanceof GraceClientError) || err.code !== 'CONFIG_NOT_FOUND') throw err
      answer = null
    }
    void this.snapshots?.write(keyOf(group, dataId), answer)
    return answer
  }

  private startListening(): void {
    if (this.listening || this.closed) return
    this.listening = true
    void this.listenLoop().finally(() => {
      this.listening = false
    })
  }

  private async listenLoop(): Promise<void> {
    const o = this.session.options
    let failures = 0
    while (!this.closed && this.followed.size > 0) {
      const abort = new AbortController()
      this.listenAbort = abort
      const signal = AbortSignal.any([abort.signal, this.stop.signal])
      const all = [...this.followed.values()]
      try {
        const answer = await this.session.transport.request<{ changed: { group: string; dataId: string }[] }>({
          method: 'POST',
          path: '/v1/cs/configs/listen',
          body: { items: all.map((f) => ({ namespace: o.namespace, group: f.group, dataId: f.dataId, md5: f.md5 })), timeoutMs: o.longPollTimeoutMs },
          timeoutMs: o.longPollTimeoutMs + o.requestTimeoutMs,
          signal,
        })
        failures = 0
        for (const c of answer?.changed ?? []) {
          const f = this.followed.get(keyOf(c.group, c.dataId))
          if (f) await this.refresh(f)
        }
      } catch (err) {
        if (this.closed) return
        if (abort.signal.aborted) continue
        this.session.logger.warn({ err: (err as Error).message }, 'grace: listening for config changes failed; retrying')
        await sleep(backoffMs(failures++), signal)
      }
    }
  }

  private async refresh(f: Followed): Promise<void> {
    let current: ConfigAnswer | null
    try {
      current = await this.read(f.dataId, f.group)
    } catch (err) {
      this.session.logger.warn({ dataId: f.dataId, err: (err as Error).message }, 'grace: reading a changed config failed; the next listen retries')
      return
    }
    const md5 = current?.md5 ?? ''
    if (md5 === f.md5) return
    f.md5 = md5
    const event: ConfigChangeEvent = { dataId: f.dataId, group: f.group, content: current?.content ?? null, md5, type: current?.type ?? '' }
    this.events.emit('change', event)
    for (const l of f.listeners) {
      try {
        l(event)
      } catch (err) {
        process.emitWarning(`grace: a config listener threw: ${(err as Error).message}`)
      }
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new GraceClientError('CLOSED', 'the config client is closed')
  }
}

function keyOf(group: string, dataId: string): string {
  return `${group}\u001f${dataId}`
}

/** The md5 Grace gives a content: hex md5 of its UTF-8 bytes. For compare-and-set from known content. */
export function contentMd5(content: string): string {
  return createHash('md5').update(content, 'utf8').digest('hex')
}
