// A binary min-heap of values by time, ties in the order they were pushed. The health prober
// schedules its probes with it, and the simulator its events; both need the earliest first and,
// for determinism, a stable order among equal times.

interface Entry<T> {
  readonly time: number
  readonly seq: number
  readonly value: T
}

export class TimeQueue<T> {
  private heap: Entry<T>[] = []
  private seq = 0

  get size(): number {
    return this.heap.length
  }

  push(time: number, value: T): void {
    const h = this.heap
    h.push({ time, seq: this.seq++, value })
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!earlier(h[i]!, h[p]!)) break
      swap(h, i, p)
      i = p
    }
  }

  /** The earliest value, removed; undefined when empty. */
  pop(): T | undefined {
    const h = this.heap
    const top = h[0]
    if (top === undefined) return undefined
    const last = h.pop()!
    if (h.length > 0) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && earlier(h[l]!, h[m]!)) m = l
        if (r < h.length && earlier(h[r]!, h[m]!)) m = r
        if (m === i) break
        swap(h, i, m)
        i = m
      }
    }
    return top.value
  }

  /** The earliest value if its time is at or before now, removed; else undefined. */
  popDue(now: number): T | undefined {
    const top = this.heap[0]
    return top !== undefined && top.time <= now ? this.pop() : undefined
  }

  clear(): void {
    this.heap = []
  }
}

function earlier<T>(a: Entry<T>, b: Entry<T>): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq)
}

function swap<T>(h: T[], i: number, j: number): void {
  const tmp = h[i]!
  h[i] = h[j]!
  h[j] = tmp
}
