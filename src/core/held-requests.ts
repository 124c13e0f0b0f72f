// Long-polls held by key: config listeners (config/listeners.ts) and naming watches
// (naming/push.ts) both hold a request until something it follows changes, its time runs out,
// the client goes away or the server shuts down. This is the bookkeeping they share: every held
// request is answered exactly once, and once answered leaves no timer, abort listener or index
// entry behind.

import type { Cancel, Clock } from './clock.js'

/** What a caller holds; its own fields ride along (the request's items, pending changes). */
export interface Held<R> {
  /** The keys it follows; a change of any of them is found through HeldRequests.following. */
  readonly keys: readonly string[]
  readonly resolve: (answer: R) => void
}

interface Slot {
  cancelTimer: Cancel | null
  detachSignal: (() => void) | null
}

export class HeldRequests<H extends Held<R>, R> {
  private readonly slots = new Map<H, Slot>()
  private readonly byKey = new Map<string, Set<H>>()

  /** nothing(): the answer when time runs out, the client aborts, or everything is released. */
  constructor(
    private readonly clock: Clock,
    private readonly nothing: () => R,
  ) {}

  /** Requests held now. */
  get size(): number {
    return this.slots.size
  }

  /** Keys some held request follows; with size, lets tests prove nothing leaks. */
  get keyCount(): number {
    return this.byKey.size
  }

  /** Holds `held` until answer(), or answers nothing() after timeoutMs or when signal aborts. */
  hold(held: H, timeoutMs: number, signal?: AbortSignal): void {
    const slot: Slot = { cancelTimer: null, detachSignal: null }
    this.slots.set(held, slot)
    for (const key of held.keys) {
      let set = this.byKey.get(key)
      if (!set) this.byKey.set(key, (set = new Set()))
      set.add(held)
    }
    slot.cancelTimer = this.clock.setTimer(timeoutMs, () => this.answer(held, this.nothing()))
    if (signal) {
      const onAbort = (): void => this.answer(held, this.nothing())
      signal.addEventListener('abort', onAbort, { once: true })
      slot.detachSignal = () => signal.removeEventListener('abort', onAbort)
    }
  }

  /** The requests following key, if any. Not to be changed while iterated: answer() later. */
  following(key: string): ReadonlySet<H> | undefined {
    return this.byKey.get(key)
  }

  /** True while held is waiting for its answer. */
  isHeld(held: H): boolean {
    return this.slots.has(held)
  }

  /** Answers held once and forgets it; a request already answered is left alone. */
  answer(held: H, answer: R): void {
    const slot = this.slots.get(held)
    if (!slot) return
    this.slots.delete(held)
    slot.cancelTimer?.()
    slot.detachSignal?.()
    for (const key of held.keys) {
      const set = this.byKey.get(key)
      set?.delete(held)
      if (set?.size === 0) this.byKey.delete(key)
    }
    held.resolve(answer)
  }

  /** Answers every held request with nothing(): for shutdown. */
  releaseAll(): void {
    for (const held of [...this.slots.keys()]) this.answer(held, this.nothing())
  }
}
