// A small seeded PRNG for the simulator: xoshiro128** (Blackman and Vigna, 2018), seeded through
// splitmix32 so that nearby seeds give unrelated streams. Written here rather than taken from a
// package so that a seed means the same run on every machine and every version of Node.
//
// Everything random in a simulation comes from one of these: the network, the disk, the faults,
// the clients and each Raft node's election timeouts. fork() hands a component its own stream, so
// that adding a random draw in one component does not reshuffle every other one.

export class Random {
  private s0: number
  private s1: number
  private s2: number
  private s3: number

  constructor(seed: number) {
    let a = seed >>> 0
    const splitmix32 = (): number => {
      a = (a + 0x9e3779b9) | 0
      let t = a ^ (a >>> 16)
      t = Math.imul(t, 0x21f0aaad)
      t ^= t >>> 15
      t = Math.imul(t, 0x735a2d97)
      return (t ^ (t >>> 15)) >>> 0
    }
    this.s0 = splitmix32()
    this.s1 = splitmix32()
    this.s2 = splitmix32()
    this.s3 = splitmix32()
    // xoshiro's state must not be all zero; splitmix32 makes that vanishingly unlikely, but a
    // seed is user input, so hold the line anyway.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const s1 = this.s1
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
    const t = s1 << 9
    this.s2 ^= this.s0
    this.s3 ^= this.s1
    this.s1 ^= this.s2
    this.s0 ^= this.s3
    this.s2 ^= t
    this.s3 = rotl(this.s3, 11)
    return result
  }

  /** A uniform number in [0, 1). */
  float(): number {
    return this.u32() / 4294967296
  }

  /** A uniform integer in [min, max], both included. */
  int(min: number, max: number): number {
    if (max < min) throw new RangeError(`int(${min}, ${max}): empty range`)
    return min + Math.floor(this.float() * (max - min + 1))
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list')
    return items[Math.floor(this.float() * items.length)]!
  }

  /** The items in a random order (a copy). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items]
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.float() * (i + 1))
      const tmp = out[i]!
      out[i] = out[j]!
      out[j] = tmp
    }
    return out
  }

  /** An independent stream for one component, drawn from this one. */
  fork(): Random {
    return new Random(this.u32())
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}
