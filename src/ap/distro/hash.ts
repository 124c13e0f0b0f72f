// The one hash function Distro uses, written here so that every node, every version of Node.js
// and the simulator compute the same numbers: ownership (which node is responsible for a client)
// and verification digests both depend on all nodes agreeing bit for bit.
//
// It is MurmurHash3 x86_32 (Austin Appleby, public domain) over the UTF-16LE bytes of the string,
// read two code units per 32-bit block. Why not FNV-1a alone: its low bits mix poorly for inputs
// that differ only at the end (client ids often share a long prefix and differ in a counter
// suffix), and rendezvous hashing needs every bit of the weight to be well mixed. Murmur3's
// finalizer gives full avalanche at the cost of a few multiplications. All arithmetic is 32-bit
// integer (Math.imul, >>>), so the result is exact and platform-independent.

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

/** Seeds of the two independent 32-bit hashes of a client id: together 64 bits of identity. */
export const SEED_A = 0x9747b28c
export const SEED_B = 0x5bd1e995

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r))
}

/** Murmur3's finalizer: every input bit affects every output bit with probability about 1/2. */
export function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1)
  k = rotl(k, 15)
  k = Math.imul(k, C2)
  h ^= k
  h = rotl(h, 13)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/** MurmurHash3 x86_32 of the string's UTF-16LE bytes, as an unsigned 32-bit integer. */
export function hashString(s: string, seed: number): number {
  let h = seed | 0
  const n = s.length
  const pairs = n & ~1
  for (let i = 0; i < pairs; i += 2) {
    h = mixBlock(h, s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16))
  }
  if (n & 1) {
    // The tail: one code unit, two bytes. Murmur3 mixes a tail without the rotate-and-add step.
    let k = s.charCodeAt(n - 1)
    k = Math.imul(k, C1)
    k = rotl(k, 15)
    k = Math.imul(k, C2)
    h ^= k
  }
  return fmix32(h ^ (n * 2))
}

/**
 * MurmurHash3 x86_32 of one 4-byte block `k` under `seed`: a seeded 32 -> 32 bit mix. Used to
 * combine an already-hashed client id with a member's seed (rendezvous weights) and a version
 * (digest fingerprints) without hashing strings again.
 */
export function mix32(seed: number, k: number): number {
  return fmix32(mixBlock(seed | 0, k | 0) ^ 4)
}

// ---- hashing a string given in parts -------------------------------------------------------------
//
// hashString of a concatenation, fed part by part without building it: a fingerprint hashes every
// instance's key (records.ts instanceKey, seven parts) on every change on every node, and the
// joined key was most of what a fingerprint allocated (nested strings, then a flat copy to read
// it). The state is module-level: a hash is begun, fed and finished within one synchronous call.

let partsHash = 0
let partsLength = 0
/** The code unit waiting for its pair, or -1. */
let partsPending = -1

export function beginParts(seed: number): void {
  partsHash = seed | 0
  partsLength = 0
  partsPending = -1
}

function feedUnit(c: number): void {
  if (partsPending < 0) partsPending = c
  else {
    partsHash = mixBlock(partsHash, partsPending | (c << 16))
    partsPending = -1
  }
}

export function feedString(s: string): void {
  const n = s.length
  for (let i = 0; i < n; i++) feedUnit(s.charCodeAt(i))
  partsLength += n
}

/** Feeds the decimal digits of a non-negative integer, as String(n) would write them. */
export function feedInteger(n: number): void {
  if (n >= 10) feedInteger(Math.floor(n / 10))
  feedUnit(48 + (n % 10))
  partsLength++
}

/** Where a hash being fed stands, to go on from there later (resumeParts). */
export interface PartsState {
  readonly hash: number
  readonly length: number
  readonly pending: number
}

export function partsState(): PartsState {
  return { hash: partsHash, length: partsLength, pending: partsPending }
}

/** Goes on with a hash from where partsState() was taken, as if what was fed before it were fed again. */
export function resumeParts(state: PartsState): void {
  partsHash = state.hash
  partsLength = state.length
  partsPending = state.pending
}

/** hashString of everything fed since beginParts. */
export function finishParts(): number {
  let h = partsHash
  if (partsPending >= 0) {
    let k = partsPending
    k = Math.imul(k, C1)
    k = rotl(k, 15)
    k = Math.imul(k, C2)
    h ^= k
  }
  return fmix32(h ^ (partsLength * 2))
}
