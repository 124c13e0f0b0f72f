// Where the config store keeps its data in the node's LevelDB:
//   PREFIX.config        + configKey                         -> Config (JSON)
//   PREFIX.configHistory + configKey + SEP + indexKey(id)    -> HistoryEntry (JSON)
// The separator after the config key keeps one config's history range from taking in another
// config whose dataId merely starts with the same characters.

import { assert } from '../core/assert.js'
import { PREFIX, indexKey, prefixRange } from '../storage/db.js'


const SEP = '\u001f'
const ID_WIDTH = indexKey(0).length

export function configDbKey(key: string): string {
  return PREFIX.config + key
}

export function historyDbKey(key: string, id: number): string {
  return historyPrefix(key) + indexKey(id)
}

/** The config key and history id a history key was built from. */
export function parseHistoryDbKey(dbKey: string): { key: string; id: number } {
  const sepAt = dbKey.length - ID_WIDTH - 1
  assert(dbKey.startsWith(PREFIX.configHistory) && dbKey[sepAt] === SEP, `not a config history key: ${JSON.stringify(dbKey)}`)
  const id = Number(dbKey.slice(sepAt + 1))
  assert(Number.isSafeInteger(id) && id > 0, `bad history id in ${JSON.stringify(dbKey)}`)
  return { key: dbKey.slice(PREFIX.configHistory.length, sepAt), id }
}

function historyPrefix(key: string): string {
  return PREFIX.configHistory + key + SEP
}

/** The range of one config's history keys. */
export function historyRange(key: string): { gte: string; lt: string } {
  return prefixRange(historyPrefix(key))
}
