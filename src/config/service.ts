// The config store's entry point for the HTTP routes (and later the SDK's server side): checks
// requests, sends writes through the CP log, reads from the state machine's memory after a read
// barrier, and holds long-poll listeners.

import { assert } from '../core/assert.js'
import type { Clock } from '../core/clock.js'
import { fail } from '../core/errors.js'
import { type Fields, paging, queryBool } from '../core/validate.js'
import type { ReplicatedLog } from '../cp/log.js'
import type { Database } from '../storage/db.js'
import { PUBLISH, type PublishCommand, type PublishResult, REMOVE, type RemoveCommand, type RemoveResult } from './commands.js'
import { type HistoryPage, readHistory } from './history.js'
import { ListenerRegistry } from './listeners.js'
import { type Config, type ConfigKey, configKeyString, keyOf } from './model.js'
import { parseKey, parseListen, parsePublish, parseRemove } from './requests.js'
import type { ConfigStateMachine } from './state-machine.js'

export interface ConfigServiceOptions {
  log: ReplicatedLog
  stateMachine: ConfigStateMachine
  db: Database
  clock: Clock
  /** For tests; production uses LIMITS.maxListeners. */
  maxListeners?: number
}

export class ConfigService {
  private readonly log: ReplicatedLog
  private readonly sm: ConfigStateMachine
  private readonly db: Database
  private readonly listeners: ListenerRegistry
  private readonly unsubscribe: () => void

  constructor(opts: ConfigServiceOptions) {
    this.log = opts.log
    this.sm = opts.stateMachine
    this.db = opts.db
    this.listeners = new ListenerRegistry({ clock: opts.clock, ...(opts.maxListeners === undefined ? {} : { maxListeners: opts.maxListeners }) })
    this.unsubscribe = this.sm.onChange((key) => this.listeners.changed(key))
  }

  /** Creates or replaces a config; with casMd5, only if the current md5 is that. */
  async publish(fields: Fields): Promise<PublishResult> {
    const command: PublishCommand = { type: PUBLISH, request: parsePublish(fields) }
    const result = (await this.log.propose(command)) as PublishResult
    assert(typeof result?.md5 === 'string' && typeof result.revision === 'number', 'publish result has md5 and revision')
    return result
  }

  /** Removes a config; deleted is false when there was none. */
  async remove(fields: Fields): Promise<RemoveResult> {
    const command: RemoveCommand = { type: REMOVE, request: parseRemove(fields) }
    const result = (await this.log.propose(command)) as RemoveResult
    assert(typeof result?.deleted === 'boolean', 'remove result has deleted')
    return result
  }

  async get(fields: Fields): Promise<Config> {
    const key = parseKey(fields)
    if (!queryBool(fields.stale, 'stale', false)) await this.log.readBarrier()
    const config = this.sm.get(key)
    if (!config) fail('CONFIG_NOT_FOUND', `no config ${key.dataId} in group ${key.group} of namespace ${key.namespace}`)
    return config
  }

  /** A config's changes, newest first. A removed config keeps its history; an unknown one has none. */
  async history(fields: Fields): Promise<HistoryPage> {
    const key = parseKey(fields)
    const { pageNo, pageSize } = paging(fields)
    if (!queryBool(fields.stale, 'stale', false)) await this.log.readBarrier()
    // History entries are read from storage, where an applied write may still be landing.
    await this.log.settled()
    return readHistory(this.db, configKeyString(key), this.sm.historyIdsOf(key), pageNo, pageSize)
  }

  /**
   * Long poll. Answers at once with the items whose md5 differs from the current one (a missing
   * config has md5 ''); when none differ, waits for a change, the timeout, or the signal (the
   * client went away), and answers [] on the last two.
   */
  async listen(fields: Fields, signal?: AbortSignal): Promise<ConfigKey[]> {
    const { items, timeoutMs } = parseListen(fields)
    await this.log.readBarrier()
    // From here to hold() nothing awaits, so no apply can slip between the check and the hold.
    const changed = new Map<string, ConfigKey>()
    for (const item of items) {
      if (this.sm.md5Of(item) !== item.md5) changed.set(configKeyString(item), keyOf(item))
    }
    if (changed.size > 0 || timeoutMs === 0) return [...changed.values()]
    return this.listeners.hold(items, timeoutMs, signal)
  }

  /** How many configs each namespace holds (this node's applied state; no read barrier). */
  countsByNamespace(): Map<string, number> {
    return this.sm.countsByNamespace()
  }

  /** Listeners held now. */
  listenerCount(): number {
    return this.listeners.size
  }

  /** True once releaseAll has run. */
  get shuttingDown(): boolean {
    return this.listeners.released
  }

  /** Answers every held listener with [] and every later one at once: call when shutting down. */
  releaseAll(): void {
    this.listeners.releaseAll()
  }

  /** Stops listening to the state machine and releases every listener. */
  close(): void {
    this.unsubscribe()
    this.listeners.releaseAll()
  }
}
