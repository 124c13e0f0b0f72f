// hash.ts: MurmurHash3 x86_32, exactly; ownership and digests need every node to compute the same
// bits, so the function is checked against the published test vectors and an independent
// byte-oriented implementation.

import t from 'tap'
import { fmix32, hashString, mix32 } from '../../../../src/ap/distro/hash.js'
import { mulberry32 } from './fixtures.js'

/** A straightforward MurmurHash3 x86_32 over bytes, written from the reference C code. */
function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  let h = seed >>> 0
  const blocks = Math.floor(bytes.length / 4)
  for (let i = 0; i < blocks; i++) {
    let k = bytes[4 * i]! | (bytes[4 * i + 1]! << 8) | (bytes[4 * i + 2]! << 16) | (bytes[4 * i + 3]! << 24)
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  let k = 0
  const tail = blocks * 4
  const rest = bytes.length & 3
  if (rest >= 3) k ^= bytes[tail + 2]! << 16
  if (rest >= 2) k ^= bytes[tail + 1]! << 8
  if (rest >= 1) {
    k ^= bytes[tail]!
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
  }
  h ^= bytes.length
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0))
}

function utf16le(s: string): Uint8Array {
  const out = new Uint8Array(s.length * 2)
  for (let i = 0; i < s.length; i++) {
    out[2 * i] = s.charCodeAt(i) & 0xff
    out[2 * i + 1] = s.charCodeAt(i) >>> 8
  }
  return out
}

t.test('the reference implementation reproduces the published MurmurHash3 x86_32 vectors', async (t) => {
  t.equal(murmur3Bytes(ascii(''), 0), 0)
  t.equal(murmur3Bytes(ascii(''), 1), 0x514e28b7)
  t.equal(murmur3Bytes(ascii(''), 0xffffffff), 0x81f16f39)
  t.equal(murmur3Bytes(new Uint8Array(4), 0), 0x2362f9de)
  t.equal(murmur3Bytes(ascii('aaaa'), 0x9747b28c), 0x5a97808a)
  t.equal(murmur3Bytes(ascii('Hello, world!'), 0x9747b28c), 0x24884cba)
  t.equal(murmur3Bytes(ascii('The quick brown fox jumps over the lazy dog'), 0x9747b28c), 0x2fa826cd)
})

t.test('hashString is MurmurHash3 of the UTF-16LE bytes, for ASCII, non-ASCII and surrogate pairs', async (t) => {
  const random = mulberry32(7)
  const samples = ['', 'a', 'ab', 'abc', '10.0.0.1:8080#true', 'ñandú', '服务注册', '🙂x', 'a\u0000b']
  for (let n = 0; n < 200; n++) {
    let s = ''
    const len = Math.floor(random() * 40)
    for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(random() * 0x10000))
    samples.push(s)
  }
  let mismatches = 0
  for (const s of samples) {
    for (const seed of [0, 1, 0x9747b28c]) if (hashString(s, seed) !== murmur3Bytes(utf16le(s), seed)) mismatches++
  }
  t.equal(mismatches, 0, `${samples.length * 3} hashes agree with the byte-level reference`)
})

t.test('mix32 is MurmurHash3 of one little-endian 4-byte block', async (t) => {
  const random = mulberry32(11)
  for (let n = 0; n < 100; n++) {
    const seed = Math.floor(random() * 2 ** 32)
    const k = Math.floor(random() * 2 ** 32)
    const bytes = Uint8Array.of(k & 0xff, (k >>> 8) & 0xff, (k >>> 16) & 0xff, k >>> 24)
    if (mix32(seed, k) !== murmur3Bytes(bytes, seed)) {
      t.fail(`mix32(${seed}, ${k})`)
      return
    }
  }
  t.pass('100 random blocks agree')
})

t.test('fmix32 avalanches: flipping one input bit flips about half the output bits', async (t) => {
  const random = mulberry32(3)
  let flips = 0
  let trials = 0
  for (let n = 0; n < 200; n++) {
    const x = Math.floor(random() * 2 ** 32)
    for (let bit = 0; bit < 32; bit++) {
      let d = (fmix32(x) ^ fmix32((x ^ (1 << bit)) >>> 0)) >>> 0
      while (d) {
        flips += d & 1
        d >>>= 1
      }
      trials++
    }
  }
  const mean = flips / trials
  t.ok(mean > 15.5 && mean < 16.5, `mean flipped bits ${mean.toFixed(2)} of 32`)
})
