// The config store's CP state machine. Current configs live in memory (reads never touch disk)
// and in LevelDB; history lives in LevelDB only, with its ids kept in memory so that apply can
// trim it without reading. Every decision (CAS, limits, trimming) is made here from the entry
// alone, never from a clock, so that every replica and every replay reaches the same state.

import { assert } from '../core/assert.js'
import { fail } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import { type Logger, silentLogger } from '../core/logger.js'
import { asFields } from '../core/validate.js'
import type { LogEntry, StateMachine } from '../cp/log.js'
import { type BatchOp, type Database, PREFIX, prefixRange } from '../storage/db.js'
import { PUBLISH, type PublishCommand, type PublishResult, REMOVE, type RemoveCommand, type RemoveResult } from './commands.js'
import { configDbKey, historyDbKey, parseHistoryDbKey } from './keys.js'
import { ABSENT_MD5, type Config, type ConfigKey, type HistoryEntry, configKeyString, keyOf, md5Hex } from './model.js'
import { parsePublish, parseRemove } from './requests.js'

/**
 * Called synchronously at the end of apply when a config's md5 changed (created, new content,
 * removed), after memory holds the new state. Must not throw; an error is logged and dropped so
 * that a listener bug cannot fail a write that has already been decided.
 */
export type ConfigChangeHandler = (key: ConfigKey, config: Config | undefined) => void

export interface ConfigStateMachineOptions {
  db: Database
  logger?: Logger
  /** For tests; production uses LIMITS. Every replica must run with the same values. */
  maxConfigs?: number
  maxHistoryPerConfig?: number
}

export class ConfigStateMachine implements StateMachine {
  private readonly db: Database
  private readonly logger: Logger
  private readonly maxConfigs: number
  private readonly maxHistory: number
  private readonly configs = new Map<string, Config>()
  /** History ids per config, oldest first; configs removed keep theirs. */
  private readonly historyIds = new Map<string, readonly number[]>()
  private readonly handlers = new Set<ConfigChangeHandler>()

  constructor(opts: ConfigStateMachineOptions) {
    this.db = opts.db
    this.logger = opts.logger ?? silentLogger
    this.maxConfigs = opts.maxConfigs ?? LIMITS.maxConfigs
    this.maxHistory = opts.maxHistoryPerConfig ?? LIMITS.maxHistoryPerConfig
    assert(this.maxHistory >= 1, 'maxHistoryPerConfig must be at least 1')
  }

  async load(): Promise<void> {
    this.configs.clear()
    this.historyIds.clear()
    for await (const [dbKey, value] of this.db.iterator(prefixRange(PREFIX.config))) {
      const config = JSON.parse(value) as Config
      const key = configKeyString(config)
      assert(dbKey === configDbKey(key), `config stored under the wrong key: ${JSON.stringify(dbKey)}`)
      this.configs.set(key, config)
    }
    // Keys only: history values hold whole contents, and only the ids are needed to trim.
    let previous: { key: string; ids: number[] } | undefined
    for await (const dbKey of this.db.keys(prefixRange(PREFIX.configHistory))) {
      const { key, id } = parseHistoryDbKey(dbKey)
      if (previous?.key !== key) {
        previous = { key, ids: [] }
        this.historyIds.set(key, previous.ids)
      }
      previous.ids.push(id)
    }
  }

  apply(entry: LogEntry, ops: BatchOp[]): PublishResult | RemoveResult {
    switch (entry.command.type) {
      case PUBLISH:
        return this.publish(entry, ops)
      case REMOVE:
        return this.remove(entry, ops)
      default:
        fail('INVALID_ARGUMENT', `unknown config command ${entry.command.type}`)
    }
  }

  /** Registers a change handler; the returned function unregisters it. */
  onChange(handler: ConfigChangeHandler): () => void {
    this.handlers.add(handler)
    return () => this.handlers.delete(handler)
  }

  get(key: ConfigKey): Config | undefined {
    return this.configs.get(configKeyString(key))
  }

  /** The md5 a client holding this config would have: '' when there is none. */
  md5Of(key: ConfigKey): string {
    return this.get(key)?.md5 ?? ABSENT_MD5
  }

  /** The config's history ids, oldest first, including those of a removed config. */
  historyIdsOf(key: ConfigKey): readonly number[] {
    return this.historyIds.get(configKeyString(key)) ?? []
  }

  /** How many configs each namespace holds. */
  countsByNamespace(): Map<string, number> {
    const counts = new Map<string, number>()
    for (const c of this.configs.values()) counts.set(c.namespace, (counts.get(c.namespace) ?? 0) + 1)
    return counts
  }

  get size(): number {
    return this.configs.size
  }

  private publish(entry: LogEntry, ops: BatchOp[]): PublishResult {
    const request = parsePublish(asFields((entry.command as PublishCommand).request, 'command.request'))
    const key = configKeyString(request)
    const current = this.configs.get(key)
    checkCas(request.casMd5, current)
    if (!current && this.configs.size >= this.maxConfigs) {
      fail('LIMIT_EXCEEDED', `there are ${this.configs.size} configs, the most allowed; remove some first`)
    }
    assert(!current || current.revision < entry.index, `entry ${entry.index} is not after revision ${current?.revision}`)

    const config: Config = {
      ...keyOf(request),
      content: request.content,
      type: request.type,
      md5: md5Hex(request.content),
      revision: entry.index,
      modifiedAt: entry.ts,
    }
    ops.push({ type: 'put', key: configDbKey(key), value: JSON.stringify(config) })
    const ids = this.appendHistory(key, { id: entry.index, op: 'publish', content: config.content, type: config.type, md5: config.md5, modifiedAt: entry.ts }, ops)

    this.configs.set(key, config)
    this.historyIds.set(key, ids)
    if (current?.md5 !== config.md5) this.emit(config, config)
    return { md5: config.md5, revision: config.revision }
  }

  private remove(entry: LogEntry, ops: BatchOp[]): RemoveResult {
    const request = parseRemove(asFields((entry.command as RemoveCommand).request, 'command.request'))
    const key = configKeyString(request)
    const current = this.configs.get(key)
    checkCas(request.casMd5, current)
    if (!current) return { deleted: false }

    ops.push({ type: 'del', key: configDbKey(key) })
    const ids = this.appendHistory(key, { id: entry.index, op: 'remove', content: current.content, type: current.type, md5: current.md5, modifiedAt: entry.ts }, ops)

    this.configs.delete(key)
    this.historyIds.set(key, ids)
    this.emit(request, undefined)
    return { deleted: true }
  }

  /** Pushes the history writes (the new entry, deletes of the oldest) and returns the new ids; memory is untouched. */
  private appendHistory(key: string, item: HistoryEntry, ops: BatchOp[]): number[] {
    const ids = [...(this.historyIds.get(key) ?? []), item.id]
    ops.push({ type: 'put', key: historyDbKey(key, item.id), value: JSON.stringify(item) })
    // A loop, not one shift: the limit may have been lowered since the history was written.
    while (ids.length > this.maxHistory) ops.push({ type: 'del', key: historyDbKey(key, ids.shift()!) })
    return ids
  }

  private emit(key: ConfigKey, config: Config | undefined): void {
    const plain = keyOf(key)
    for (const handler of this.handlers) {
      try {
        handler(plain, config)
      } catch (err) {
        this.logger.error({ err }, 'config change handler failed')
      }
    }
  }
}

/** casMd5 undefined: no condition. '': the config must not exist. Otherwise its md5 must match. */
function checkCas(casMd5: string | undefined, current: Config | undefined): void {
  if (casMd5 === undefined) return
  const actual = current?.md5 ?? ABSENT_MD5
  if (actual === casMd5) return
  const expected = casMd5 === ABSENT_MD5 ? 'no config' : `md5 ${casMd5}`
  const found = current ? `md5 ${actual}` : 'no config'
  fail('CAS_MISMATCH', `casMd5 expected ${expected} but found ${found}`)
}
