// Turns request fields (a JSON body, a decoded protobuf message, a query string) into checked
// config requests. The state machine runs the same checks again on every log entry, so a command
// that slipped past them (from an older or buggy proposer) is still rejected deterministically.

import { fail } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import { type Fields, LONE_SURROGATE, asFields, integer, name, shortText } from '../core/validate.js'
import { ABSENT_MD5, type ConfigKey, DEFAULT_CONFIG_TYPE, DEFAULT_GROUP, DEFAULT_NAMESPACE } from './model.js'

export interface PublishRequest extends ConfigKey {
  readonly content: string
  readonly type: string
  /** When set, the publish applies only if the current md5 is this ('' = the config must not exist). */
  readonly casMd5?: string
}

export interface RemoveRequest extends ConfigKey {
  readonly casMd5?: string
}

export interface ListenItem extends ConfigKey {
  /** The md5 the client holds; '' when it holds nothing. */
  readonly md5: string
}

export interface ListenRequest {
  readonly items: readonly ListenItem[]
  readonly timeoutMs: number
}

const MD5_HEX = /^[0-9a-fA-F]{32}$/

/** The config a request names. `at` prefixes field names in errors (items[3].dataId). */
export function parseKey(fields: Fields, at = ''): ConfigKey {
  return {
    namespace: name(fields.namespace, `${at}namespace`, DEFAULT_NAMESPACE),
    // '@@' joins group and name in Nacos's wire formats, so a group holding it would be ambiguous.
    group: name(fields.group, `${at}group`, DEFAULT_GROUP, ['@@']),
    dataId: name(fields.dataId, `${at}dataId`),
  }
}

export function parseContent(value: unknown): string {
  if (value === undefined || value === null) fail('INVALID_ARGUMENT', 'content is required')
  if (typeof value !== 'string') fail('INVALID_ARGUMENT', 'content must be a string')
  // As in Nacos: an empty config is almost always a client bug; removing is the explicit way.
  if (value === '') fail('INVALID_ARGUMENT', 'content must not be empty; remove the config instead')
  const bytes = Buffer.byteLength(value, 'utf8')
  if (bytes > LIMITS.maxConfigContentBytes) {
    fail('CONTENT_TOO_LARGE', `content is ${bytes} bytes, over the limit of ${LIMITS.maxConfigContentBytes}`)
  }
  // The md5 must be of the bytes the client sent, and a lone surrogate has no UTF-8 form.
  if (LONE_SURROGATE.test(value)) fail('INVALID_ARGUMENT', 'content has an unpaired UTF-16 surrogate')
  return value
}

/** An md5 as clients send it: '' or 32 hex digits, returned in lower case; undefined when absent. */
export function parseMd5(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') fail('INVALID_ARGUMENT', `${field} must be a string`)
  if (value === ABSENT_MD5) return ABSENT_MD5
  if (!MD5_HEX.test(value)) fail('INVALID_ARGUMENT', `${field} must be '' or 32 hex digits`)
  return value.toLowerCase()
}

export function parsePublish(fields: Fields): PublishRequest {
  const key = parseKey(fields)
  const content = parseContent(fields.content)
  const type = shortText(fields.type, 'type', LIMITS.maxConfigTypeBytes, DEFAULT_CONFIG_TYPE)
  const casMd5 = parseMd5(fields.casMd5, 'casMd5')
  return casMd5 === undefined ? { ...key, content, type } : { ...key, content, type, casMd5 }
}

export function parseRemove(fields: Fields): RemoveRequest {
  const key = parseKey(fields)
  const casMd5 = parseMd5(fields.casMd5, 'casMd5')
  return casMd5 === undefined ? key : { ...key, casMd5 }
}

export function parseListen(fields: Fields): ListenRequest {
  const raw = fields.items
  if (raw === undefined || raw === null) fail('INVALID_ARGUMENT', 'items is required')
  if (!Array.isArray(raw)) fail('INVALID_ARGUMENT', 'items must be an array')
  // An empty list could only ever time out: certainly a client bug.
  if (raw.length === 0) fail('INVALID_ARGUMENT', 'items must not be empty')
  if (raw.length > LIMITS.maxListenItems) fail('INVALID_ARGUMENT', `items has ${raw.length} entries, over the limit of ${LIMITS.maxListenItems}`)
  const items = raw.map((item: unknown, i): ListenItem => {
    const at = `items[${i}].`
    const f = asFields(item, `items[${i}]`)
    return { ...parseKey(f, at), md5: parseMd5(f.md5, `${at}md5`) ?? ABSENT_MD5 }
  })
  const timeoutMs = integer(fields.timeoutMs, 'timeoutMs', 0, LIMITS.maxListenTimeoutMs, LIMITS.defaultListenTimeoutMs)
  return { items, timeoutMs }
}
