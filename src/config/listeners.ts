// Long-poll listeners: requests held until one of their configs changes or their time runs out.
// The state machine reports changes synchronously from apply; answers go out in a microtask, so
// every change of one applied batch reaches a listener in the same answer, and only after the
// whole batch is in memory (a client that reads right after its answer sees the new content).

import { assert } from '../core/assert.js'
import type { Cancel, Clock } from '../core/clock.js'
import { fail } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import { type ConfigKey, configKeyString, keyOf } from './model.js'

interface Held {
  readonly keys: readonly string[]
  readonly resolve: (changed: ConfigKey[]) => void
  cancelTimer: Cancel | null
  detachSignal: (() => void) | null
  /** Set by the first change; more changes before the answer goes out join it. */
  changed: ConfigKey[] | null
  done: boolean
}

export interface ListenerRegistryOptions {
  clock: Clock
  /** For tests; production uses LIMITS.maxListeners. */
  maxListeners?: number
}

export class ListenerRegistry {
  private readonly clock: Clock
  private readonly maxListeners: number
  private readonly byKey = new Map<string, Set<Held>>()
  private readonly held = new Set<Held>()
  private closed = false

  constructor(opts: ListenerRegistryOptions) {
    this.clock = opts.clock
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
    return this.byKey.size
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
      const held: Held = { keys: [...new Set(keys.map(configKeyString))], resolve, cancelTimer: null, detachSignal: null, changed: null, done: false }
      this.held.add(held)
      for (const key of held.keys) {
        let set = this.byKey.get(key)
        if (!set) this.byKey.set(key, (set = new Set()))
        set.add(held)
      }
      held.cancelTimer = this.clock.setTimer(timeoutMs, () => this.finish(held, []))
      if (signal) {
        const onAbort = (): void => this.finish(held, [])
        signal.addEventListener('abort', onAbort, { once: true })
        held.detachSignal = () => signal.removeEventListener('abort', onAbort)
      }
    })
  }

  /** The config's md5 changed. Called from the state machine's apply: must be quick and not throw. */
  changed(key: ConfigKey): void {
    const set = this.byKey.get(configKeyString(key))
    if (!set) return
    for (const held of set) {
      if (held.changed) {
        if (!held.changed.some((k) => configKeyString(k) === configKeyString(key))) held.changed.push(keyOf(key))
        continue
      }
      held.changed = [keyOf(key)]
      queueMicrotask(() => this.finish(held, held.changed!))
    }
  }

  /**
   * Answers every held listener with [] and makes later listens answer [] at once. For shutdown:
   * held requests would otherwise keep the server from closing for up to their timeout.
   */
  releaseAll(): void {
    this.closed = true
    for (const held of [...this.held]) this.finish(held, [])
  }

  private finish(held: Held, changed: ConfigKey[]): void {
    if (held.done) return
    held.done = true
    held.cancelTimer?.()
    held.detachSignal?.()
    this.held.delete(held)
    for (const key of held.keys) {
      const set = this.byKey.get(key)
      set?.delete(held)
      if (set?.size === 0) this.byKey.delete(key)
    }
    held.resolve(changed)
  }
}
