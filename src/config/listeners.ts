// Long-poll listeners: requests held until one of their configs changes or their time runs out.
// The state machine reports changes synchronously from apply; answers go out in a microtask, so
// every change of one applied batch reaches a listener in the same answer, and only after the
// whole batch is in memory (a client that reads right after its answer sees the new content).

import { assert } from '../core/assert.js'
import type { Clock } from '../core/clock.js'
import { fail } from '../core/errors.js'
import { type Held as HeldRequest, HeldRequests } from '../core/held-requests.js'
import { LIMITS } from '../core/limits.js'
import { type ConfigKey, configKeyString, keyOf } from './model.js'

interface Held extends HeldRequest<ConfigKey[]> {
  /** Set by the first change; more changes before the answer goes out join it. */
  changed: ConfigKey[] | null
}

export interface ListenerRegistryOptions {
  clock: Clock
  /** For tests; production uses LIMITS.maxListeners. */
  maxListeners?: number
}

export class ListenerRegistry {
  private readonly maxListeners: number
  private readonly held: HeldRequests<Held, ConfigKey[]>
  private closed = false

  constructor(opts: ListenerRegistryOptions) {
    this.held = new HeldRequests(opts.clock, () => [])
    this.maxListeners = opts.maxListeners ?? LIMITS.maxListeners
  }

  /** Listeners held now. */
  get size(): number {
    return this.held.size
  }

  /** True once releaseAll has run: the server is shutting down. */
  get released(): boolean {
    return this.closed
  }

  /** Keys some held listener waits on; with size, lets tests prove nothing leaks. */
  get watchedKeys(): number {
    return this.held.keyCount
  }

  /**
   * Holds until one of `keys` changes (resolves with the changed keys), `timeoutMs` passes, the
   * signal aborts (the client went away) or releaseAll runs (each resolves with []). Throws
   * TOO_MANY_LISTENERS when the limit is reached. The caller checks the current md5s first, in
   * the same synchronous run, so that no change can fall between the check and the hold.
   */
  hold(keys: readonly ConfigKey[], timeoutMs: number, signal?: AbortSignal): Promise<ConfigKey[]> {
    assert(keys.length > 0, 'a listener needs keys')
    if (this.closed || signal?.aborted) return Promise.resolve([])
    if (this.held.size >= this.maxListeners) {
      fail('TOO_MANY_LISTENERS', `the server holds ${this.held.size} listeners, the most it allows; retry later`)
    }
    return new Promise((resolve) => {
      this.held.hold({ keys: [...new Set(keys.map(configKeyString))], resolve, changed: null }, timeoutMs, signal)
    })
  }

  /** The config's md5 changed. Called from the state machine's apply: must be quick and not throw. */
  changed(key: ConfigKey): void {
    const set = this.held.following(configKeyString(key))
    if (!set) return
    for (const held of set) {
      if (held.changed) {
        if (!held.changed.some((k) => configKeyString(k) === configKeyString(key))) held.changed.push(keyOf(key))
        continue
      }
      held.changed = [keyOf(key)]
      queueMicrotask(() => this.held.answer(held, held.changed!))
    }
  }

  /**
   * Answers every held listener with [] and makes later listens answer [] at once. For shutdown:
   * held requests would otherwise keep the server from closing for up to their timeout.
   */
  releaseAll(): void {
    this.closed = true
    this.held.releaseAll()
  }
}
