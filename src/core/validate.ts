// Field checks shared by every input path (JSON bodies, protobuf bodies, query strings). Each
// takes the raw value and the field's name, and returns the typed value or throws a GraceError
// that names the field. No check stores anything, so a rejected request changes nothing.

import { fail } from './errors.js'
import { LIMITS } from './limits.js'

export type Fields = Record<string, unknown>

// Node 20 has String.prototype.isWellFormed (ES2024); tsconfig's target (es2017) does not know it.
declare global {
  interface String {
    isWellFormed(): boolean
  }
}

/** The request's fields: a JSON object, or the object a protobuf message decoded to. */
export function asFields(body: unknown, what = 'body'): Fields {
  if (body === undefined || body === null) return {}
  if (typeof body !== 'object' || Array.isArray(body)) fail('INVALID_ARGUMENT', `${what} must be an object`)
  return body as Fields
}

const CONTROL = /[\u0000-\u001f\u007f]/
/**
 * With the u flag a well-formed surrogate pair is one code point, so only lone halves match. A
 * lone surrogate has no UTF-8 form: two different strings would store as the same bytes.
 */
export const LONE_SURROGATE = /\p{Cs}/u

/**
 * A name: namespace, group, service, cluster, dataId, clientId. Non-empty, at most 512 UTF-8
 * bytes, no control characters. `extraForbidden` lists substrings that the name's role reserves
 * (',' in cluster names, which queries list comma-separated; '@@', which Nacos names use).
 */
export function name(value: unknown, field: string, fallback?: string, extraForbidden: readonly string[] = []): string {
  if (value === undefined || value === null || value === '') {
    if (fallback !== undefined) return fallback
    fail('INVALID_NAME', `${field} is required`)
  }
  if (typeof value !== 'string') fail('INVALID_NAME', `${field} must be a string`)
  const problem = nameProblem(value)
  if (problem) fail('INVALID_NAME', `${field} ${problem}`)
  // ' west' and 'west' would be two names that look the same; neither end may be white space.
  if (EDGE_SPACE.test(value)) fail('INVALID_NAME', `${field} must not start or end with white space`)
  for (const bad of extraForbidden) {
    if (value.includes(bad)) fail('INVALID_NAME', `${field} must not contain '${bad}'`)
  }
  return value
}

export function optionalBool(value: unknown, field: string): boolean | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'boolean') return value
  fail('INVALID_ARGUMENT', `${field} must be true or false`)
}

export function bool(value: unknown, field: string, fallback: boolean): boolean {
  return optionalBool(value, field) ?? fallback
}

/** A boolean from a query string: true/false/1/0. */
export function queryBool(value: unknown, field: string, fallback: boolean): boolean {
  if (value === undefined || value === '') return fallback
  if (value === 'true' || value === '1' || value === true) return true
  if (value === 'false' || value === '0' || value === false) return false
  fail('INVALID_ARGUMENT', `${field} must be true or false`)
}

/** An integer, from JSON (a number) or a query string (digits). */
export function integer(value: unknown, field: string, min: number, max: number, fallback?: number): number {
  if (value === undefined || value === null || value === '') {
    if (fallback !== undefined) return fallback
    fail('INVALID_ARGUMENT', `${field} is required`)
  }
  const n = typeof value === 'string' && /^-?\d{1,16}$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    fail('INVALID_ARGUMENT', `${field} must be an integer in ${min}..${max}`)
  }
  return n
}

const EDGE_SPACE = /^\s|\s$/

/**
 * What is wrong with a name, in one pass over its characters (names are on every request, so
 * this is on the hot path): a control character, an unpaired surrogate, or over the byte limit.
 */
function nameProblem(value: string): string | undefined {
  if (value.length > LIMITS.maxNameBytes) return `is over ${LIMITS.maxNameBytes} bytes`
  let bytes = 0
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x80) {
      if (c < 0x20 || c === 0x7f) return 'has a control character'
      bytes += 1
    } else if (c < 0x800) {
      bytes += 2
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const next = value.charCodeAt(i + 1)
      if (!(next >= 0xdc00 && next <= 0xdfff)) return 'has an unpaired UTF-16 surrogate'
      bytes += 4
      i++
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return 'has an unpaired UTF-16 surrogate'
    } else {
      bytes += 3
    }
  }
  return bytes > LIMITS.maxNameBytes ? `is over ${LIMITS.maxNameBytes} bytes` : undefined
}

/** Optional free text with a byte limit (a config type, a description). */
export function shortText(value: unknown, field: string, maxBytes: number, fallback: string): string {
  if (value === undefined || value === null || value === '') return fallback
  if (typeof value !== 'string') fail('INVALID_ARGUMENT', `${field} must be a string`)
  if (Buffer.byteLength(value, 'utf8') > maxBytes) fail('INVALID_ARGUMENT', `${field} is over ${maxBytes} bytes`)
  if (CONTROL.test(value) || LONE_SURROGATE.test(value)) fail('INVALID_ARGUMENT', `${field} has a control character or an unpaired surrogate`)
  return value
}

/** A string-to-string map with a total size limit (keys plus values, UTF-8 bytes). */
export function stringMap(value: unknown, field: string, maxBytes: number): Record<string, string> {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) fail('INVALID_METADATA', `${field} must be an object of strings`)
  // A plain object filled by assignment, as `{ ...map }` compiles (Object.assign): a key
  // "__proto__" is dropped (its setter ignores a string) rather than becoming a prototype. Going
  // through a null-prototype copy first cost about 6 times as much for a 50-key map.
  const out: Record<string, string> = {}
  const keys = Object.keys(value)
  let bytes = 0
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k]
    if (typeof v !== 'string') fail('INVALID_METADATA', `${field}.${k} must be a string`)
    if (k === '') fail('INVALID_METADATA', `${field} has an empty key`)
    // isWellFormed: no lone surrogate (LONE_SURROGATE's test), without a regular expression.
    if (!k.isWellFormed() || !v.isWellFormed()) fail('INVALID_METADATA', `${field}.${k} has an unpaired UTF-16 surrogate`)
    bytes += Buffer.byteLength(k, 'utf8') + Buffer.byteLength(v, 'utf8')
    if (bytes > maxBytes) fail('INVALID_METADATA', `${field} is over ${maxBytes} bytes`)
    out[k] = v
  }
  return out
}

/** Paging from a query string: pageNo from 1, pageSize up to the limit. */
export function paging(query: Fields, defaultSize = 100): { pageNo: number; pageSize: number } {
  return {
    pageNo: integer(query.pageNo, 'pageNo', 1, 1_000_000, 1),
    pageSize: integer(query.pageSize, 'pageSize', 1, LIMITS.maxPageSize, defaultSize),
  }
}

/** A node id: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

export function nodeId(value: unknown, field: string): string {
  if (typeof value !== 'string' || !NODE_ID_PATTERN.test(value)) {
    fail('INVALID_ARGUMENT', `${field} must be a node id: letters, digits, '.', '_' and '-', at most 64`)
  }
  return value
}
