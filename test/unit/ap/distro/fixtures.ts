// Shared by the Distro core's tests: a seeded PRNG and small record factories. Not a test file
// (tap runs *.test.js only).

import type { Instance } from '../../../../src/naming/model.js'
import type { ClientRecord } from '../../../../src/ap/store.js'

/** mulberry32: a tiny seeded PRNG with a 2^32 period; numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function pick<T>(random: () => number, xs: readonly T[]): T {
  return xs[Math.floor(random() * xs.length)]!
}

/** Fisher-Yates, in place. */
export function shuffle<T>(random: () => number, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = xs[i]!
    xs[i] = xs[j]!
    xs[j] = tmp
  }
  return xs
}

export function instance(clientId: string, port: number, metadata: Record<string, string> = {}): Instance {
  return {
    namespace: 'public',
    group: 'DEFAULT_GROUP',
    service: 'orders',
    cluster: 'DEFAULT',
    ip: '10.0.0.1',
    port,
    weight: 1,
    enabled: true,
    healthy: true,
    ephemeral: true,
    metadata,
    clientId,
  }
}

/** A record whose single instance's port tells versions apart in assertions. */
export function record(clientId: string, version: number, port = 8080): ClientRecord {
  return { clientId, version, instances: [instance(clientId, port)] }
}

/** Client ids as real clients make them: a shared prefix and a counter. */
export function clientIds(n: number, prefix = '10.0.0.1:'): string[] {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(`${prefix}${i}#true`)
  return out
}
