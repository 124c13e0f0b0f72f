// Time comes in through this interface so that tests and the simulator can drive it.
// Only main.ts creates a SystemClock; everything else receives a Clock.

export interface Cancel {
  (): void
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
  /** Runs fn once after ms milliseconds; the returned function cancels it. */
  setTimer(ms: number, fn: () => void): Cancel
}

/** A clock that only moves when told to: timers fire inside advance(), in time order. */
export class ManualClock implements Clock {
  private time: number
  private seq = 0
  private timers: { at: number; seq: number; fn: () => void; cancelled: boolean }[] = []

  constructor(start = 1_700_000_000_000) {
    this.time = start
  }

  now(): number {
    return this.time
  }

  setTimer(ms: number, fn: () => void): Cancel {
    const timer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false }
    this.timers.push(timer)
    return () => {
      timer.cancelled = true
    }
  }

  /** Moves time forward by ms, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.time + ms
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled)
      let next: (typeof this.timers)[number] | undefined
      for (const t of this.timers) {
        if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t
      }
      if (!next) break
      this.time = Math.max(this.time, next.at)
      next.cancelled = true
      next.fn()
    }
    this.time = end
  }

  pendingTimers(): number {
    return this.timers.filter((t) => !t.cancelled).length
  }
}

/** Wall-clock time and real timers. Created only by the composition root (main.ts) and tests. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now()
  }

  setTimer(ms: number, fn: () => void): Cancel {
    const handle = setTimeout(fn, ms)
    // A pending timer must not keep a stopping process alive.
    handle.unref()
    return () => clearTimeout(handle)
  }
}
