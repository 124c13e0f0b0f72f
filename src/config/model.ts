// The config store's data model: a config is content under (namespace, group, dataId), as in
// Nacos, with the md5 clients compare and the CP log index of its last change as its revision.

import { createHash } from 'node:crypto'

export { DEFAULT_NAMESPACE, DEFAULT_GROUP } from '../naming/model.js'

export interface ConfigKey {
  readonly namespace: string
  readonly group: string
  readonly dataId: string
}

export interface Config extends ConfigKey {
  readonly content: string
  /** A label for tools (text, json, yaml, properties); Grace does not parse the content. */
  readonly type: string
  /** Hex md5 of the UTF-8 content: what long-poll clients and compare-and-set compare. */
  readonly md5: string
  /** Index of the CP log entry that last changed the config. */
  readonly revision: number
  /** The log entry's timestamp, ms since the epoch. */
  readonly modifiedAt: number
}

export type HistoryOp = 'publish' | 'remove'

/** One change of one config. A remove keeps the content it removed, so it can be restored. */
export interface HistoryEntry {
  /** The CP log index of the change, which orders a config's history. */
  readonly id: number
  readonly op: HistoryOp
  readonly content: string
  readonly type: string
  readonly md5: string
  readonly modifiedAt: number
}

/** The md5 that stands for "no such config" in listen items and in casMd5. */
export const ABSENT_MD5 = ''

export const DEFAULT_CONFIG_TYPE = 'text'

export function md5Hex(content: string): string {
  return createHash('md5').update(content, 'utf8').digest('hex')
}

// Names never hold control characters (validation rejects them), so one makes a safe separator
// that also ends the key: no key is then a prefix of another in LevelDB range scans.
const SEP = '\u001f'

/** The map key of a config, also the middle part of its LevelDB keys. */
export function configKeyString(k: ConfigKey): string {
  return k.namespace + SEP + k.group + SEP + k.dataId
}

export function keyOf(k: ConfigKey): ConfigKey {
  return { namespace: k.namespace, group: k.group, dataId: k.dataId }
}
