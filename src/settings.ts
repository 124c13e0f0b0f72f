// The server's settings: from flags, then environment variables, then a JSON config file
// (--config), then defaults; the first that gives a value wins. Every value is checked here, before
// anything opens or listens, and a bad one stops the server with a message that names it.

import { readFileSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { DEFAULT_HEARTBEAT_MS, MAX_HEARTBEAT_MS, MIN_HEARTBEAT_MS } from './cluster/members.js'
import { parsePeerAddress } from './cluster/transport.js'
import { NODE_ID_PATTERN } from './core/validate.js'
import { HEALTH_USAGE, type HealthSettings, readHealthSettings } from './naming/health-settings.js'

export const USAGE = `grace: a service registry and configuration center

Usage: grace [options]
  --config FILE      read settings from a JSON file: an object whose keys are the flag names
                     below without the dashes ("port", "data-dir", "members" ...); flags and
                     environment variables override it (GRACE_CONFIG)
  --host HOST        address to listen on       (GRACE_HOST, default 127.0.0.1)
  --port PORT        client port                (GRACE_PORT, default 8848)
  --client-address A where clients reach this node, host:port, published to the other members and
                     to clients (GRACE_CLIENT_ADDRESS; default: the address it listens on, or with
                     --host 0.0.0.0 or ::, its peer host and the client port)
  --data-dir DIR     LevelDB data directory     (GRACE_DATA_DIR, default ./data)
  --log-level LEVEL  fatal|error|warn|info|debug|trace|silent (GRACE_LOG_LEVEL, default info)
  --node-id ID       this node's stable id      (GRACE_NODE_ID, default n1)
  --members LIST     the cluster's voters and their peer addresses, id=host:port,...
                     (GRACE_MEMBERS; absent: a standalone node). Must include this node.
  --cluster-secret S shared secret authenticating peers, at least 16 characters
                     (GRACE_CLUSTER_SECRET; required with --members; there is no default)
  --join             this node is new to a running cluster: start with an empty log and wait to
                     be added (POST /v1/cluster/members on any member); --members then lists
                     the running members and this node (GRACE_JOIN=true)
  --member-heartbeat-ms MS  server heartbeats between members every MS milliseconds; a member
                     is SUSPICIOUS after 1.5 periods without one, DOWN after 3
                     (GRACE_MEMBER_HEARTBEAT_MS, default ${DEFAULT_HEARTBEAT_MS})
  --snapshot-every N compact the Raft log every N applied entries (GRACE_SNAPSHOT_EVERY, default 10000)
  --snapshot-retain N entries kept behind the compaction point   (GRACE_SNAPSHOT_RETAIN, default 5000)
${HEALTH_USAGE}
  --help             this text`

export interface ServerSettings {
  host: string
  port: number
  /** Where clients reach this node, when set; otherwise worked out once it listens (clientAddressFor). */
  clientAddress: string | undefined
  dataDir: string
  logLevel: string
  nodeId: string
  /** Peer addresses by node id, this node included; empty for a standalone node. */
  members: Map<string, string>
  /** A new node for a running cluster: no first configuration of its own. */
  join: boolean
  clusterSecret: string | undefined
  memberHeartbeatMs: number
  snapshotEvery: number
  snapshotRetain: number
  /** Health probes and self-preservation. */
  health: HealthSettings
  /** The config file read, if any, and whether others than its owner can read it. */
  configFile: { path: string; readableByOthers: boolean } | undefined
}

/** Every setting: its flag (and config file key), its environment variable, and its JSON type in a file. */
const SETTINGS = {
  host: { env: 'GRACE_HOST', type: 'string' },
  port: { env: 'GRACE_PORT', type: 'integer' },
  'client-address': { env: 'GRACE_CLIENT_ADDRESS', type: 'string' },
  'data-dir': { env: 'GRACE_DATA_DIR', type: 'string' },
  'log-level': { env: 'GRACE_LOG_LEVEL', type: 'string' },
  'node-id': { env: 'GRACE_NODE_ID', type: 'string' },
  members: { env: 'GRACE_MEMBERS', type: 'members' },
  'cluster-secret': { env: 'GRACE_CLUSTER_SECRET', type: 'string' },
  join: { env: 'GRACE_JOIN', type: 'boolean' },
  'member-heartbeat-ms': { env: 'GRACE_MEMBER_HEARTBEAT_MS', type: 'integer' },
  'snapshot-every': { env: 'GRACE_SNAPSHOT_EVERY', type: 'integer' },
  'snapshot-retain': { env: 'GRACE_SNAPSHOT_RETAIN', type: 'integer' },
  'probe-concurrency': { env: 'GRACE_PROBE_CONCURRENCY', type: 'integer' },
  'self-preservation-share': { env: 'GRACE_SELF_PRESERVATION_SHARE', type: 'number' },
  'self-preservation-window-ms': { env: 'GRACE_SELF_PRESERVATION_WINDOW_MS', type: 'integer' },
  'self-preservation-min-clients': { env: 'GRACE_SELF_PRESERVATION_MIN_CLIENTS', type: 'integer' },
} as const satisfies Record<string, { env: string; type: 'string' | 'integer' | 'number' | 'boolean' | 'members' }>

type Key = keyof typeof SETTINGS
/** Every value as the flags give it: a string, or a boolean for --join. */
type Raw = Partial<Record<Key, string | boolean>>

/** How the file system is reached; tests pass their own. */
export interface SettingsFiles {
  read(path: string): string
  /** The file's permission bits. */
  mode(path: string): number
}

const realFiles: SettingsFiles = {
  read: (path) => readFileSync(path, 'utf8'),
  mode: (path) => statSync(path).mode,
}

function positiveInt(value: string | undefined, name: string, fallback: number, min = 1, max = 1e9): number {
  if (value === undefined) return fallback
  const n = /^\d{1,10}$/.test(value.trim()) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number in ${min}..${max}, not ${JSON.stringify(value)}`)
  return n
}

function parseMembers(list: string | undefined): Map<string, string> {
  const members = new Map<string, string>()
  if (!list) return members
  for (const item of list.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=')
    const id = item.slice(0, eq)
    const address = item.slice(eq + 1)
    if (eq <= 0 || !NODE_ID_PATTERN.test(id) || !/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(address)) {
      throw new Error(`invalid member ${JSON.stringify(item)}: expected id=host:port`)
    }
    try {
      parsePeerAddress(address)
    } catch (err) {
      throw new Error(`invalid member ${JSON.stringify(item)}: ${(err as Error).message}`)
    }
    if (members.has(id)) throw new Error(`member ${id} is listed twice`)
    members.set(id, address)
  }
  return members
}

/**
 * The config file's settings, in the flags' form. Strict: the file must be a JSON object whose
 * keys are flag names and whose values have the setting's type; anything else is an error that
 * names the file and the key, so a typo never passes for a default.
 */
export function readConfigFile(path: string, files: SettingsFiles = realFiles): Raw {
  let text: string
  try {
    text = files.read(path)
  } catch (err) {
    throw new Error(`config file ${path}: cannot read it: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new Error(`config file ${path}: not valid JSON: ${(err as Error).message}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`config file ${path}: must be a JSON object of settings`)
  const out: Raw = {}
  for (const [key, value] of Object.entries(parsed)) {
    if (!Object.prototype.hasOwnProperty.call(SETTINGS, key)) {
      throw new Error(`config file ${path}: unknown setting ${JSON.stringify(key)}; the settings are ${Object.keys(SETTINGS).join(', ')}`)
    }
    const k = key as Key
    const bad = (want: string) => new Error(`config file ${path}: "${key}" must be ${want}, not ${JSON.stringify(value)}`)
    switch (SETTINGS[k].type) {
      case 'string':
        if (typeof value !== 'string') throw bad('a string')
        out[k] = value
        break
      case 'integer':
        if (typeof value !== 'number' || !Number.isInteger(value)) throw bad('a whole number')
        out[k] = String(value)
        break
      case 'number':
        if (typeof value !== 'number' || !Number.isFinite(value)) throw bad('a number')
        out[k] = String(value)
        break
      case 'boolean':
        if (typeof value !== 'boolean') throw bad('true or false')
        out[k] = value
        break
      case 'members':
        // "id=host:port,..." as on the command line, or {"id": "host:port", ...}.
        if (typeof value === 'string') out[k] = value
        else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
          const entries = Object.entries(value)
          for (const [id, address] of entries) if (typeof address !== 'string') throw bad(`a map of node id to "host:port" (${id} is not a string)`)
          if (entries.length === 0) throw bad('a non-empty map of node id to "host:port"')
          out[k] = entries.map(([id, address]) => `${id}=${address}`).join(',')
        } else throw bad('"id=host:port,..." or an object of node id to "host:port"')
        break
    }
  }
  return out
}

export function readSettings(argv: string[], env: NodeJS.ProcessEnv, files: SettingsFiles = realFiles): ServerSettings | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'client-address': { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      'node-id': { type: 'string' },
      members: { type: 'string' },
      'cluster-secret': { type: 'string' },
      join: { type: 'boolean' },
      'member-heartbeat-ms': { type: 'string' },
      'snapshot-every': { type: 'string' },
      'snapshot-retain': { type: 'string' },
      'probe-concurrency': { type: 'string' },
      'self-preservation-share': { type: 'string' },
      'self-preservation-window-ms': { type: 'string' },
      'self-preservation-min-clients': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  })
  if (values.help) return 'help'
  const configPath = values.config ?? env.GRACE_CONFIG
  const file: Raw = configPath ? readConfigFile(configPath, files) : {}
  // Flags, then the environment, then the file.
  const get = (key: Exclude<Key, 'join'>): string | undefined => {
    const flag = values[key]
    if (flag !== undefined) return flag
    const fromEnv = env[SETTINGS[key].env]
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv
    const fromFile = file[key]
    return typeof fromFile === 'string' ? fromFile : undefined
  }

  const portText = get('port')
  const port = portText === undefined ? 8848 : /^\d{1,5}$/.test(portText.trim()) ? Number(portText) : NaN
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port: ${portText}`)
  const logLevel = get('log-level') ?? 'info'
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new Error(`invalid log level: ${logLevel}`)
  const nodeId = get('node-id') ?? 'n1'
  if (!NODE_ID_PATTERN.test(nodeId)) throw new Error(`invalid node id ${JSON.stringify(nodeId)}: letters, digits, '.', '_' and '-', at most 64`)
  const members = parseMembers(get('members'))
  const clusterSecret = get('cluster-secret')
  if (members.size > 0) {
    if (!members.has(nodeId)) throw new Error(`--members does not list this node (${nodeId})`)
    // CVE-2021-29441 in Nacos: peers must prove themselves, always. No default secret exists.
    if (members.size > 1 && (clusterSecret === undefined || clusterSecret.length < 16)) {
      throw new Error('a cluster needs --cluster-secret (or GRACE_CLUSTER_SECRET, or "cluster-secret" in the config file) of at least 16 characters')
    }
  }
  let join: boolean
  if (values.join !== undefined) join = values.join
  else if (env.GRACE_JOIN !== undefined && env.GRACE_JOIN !== '') {
    if (!['1', 'true', '0', 'false'].includes(env.GRACE_JOIN)) throw new Error(`GRACE_JOIN must be true or false, not ${JSON.stringify(env.GRACE_JOIN)}`)
    join = ['1', 'true'].includes(env.GRACE_JOIN)
  } else join = file.join === true
  if (join && members.size < 2) throw new Error('--join needs --members listing at least one running member and this node')
  const clientAddress = get('client-address')
  if (clientAddress !== undefined) {
    try {
      parsePeerAddress(clientAddress)
    } catch {
      throw new Error(`invalid client address ${JSON.stringify(clientAddress)}: expected host:port`)
    }
  }
  let configFile: ServerSettings['configFile']
  if (configPath) {
    let mode = 0
    try {
      mode = files.mode(configPath)
    } catch {}
    configFile = { path: resolve(configPath), readableByOthers: (mode & 0o077) !== 0 }
  }
  return {
    host: get('host') ?? '127.0.0.1',
    port,
    clientAddress,
    dataDir: resolve(get('data-dir') ?? './data'),
    logLevel,
    nodeId,
    members,
    join,
    clusterSecret,
    memberHeartbeatMs: positiveInt(get('member-heartbeat-ms'), '--member-heartbeat-ms', DEFAULT_HEARTBEAT_MS, MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS),
    snapshotEvery: positiveInt(get('snapshot-every'), '--snapshot-every', 10_000),
    snapshotRetain: positiveInt(get('snapshot-retain'), '--snapshot-retain', 5_000),
    // Each already taken from flag, environment or file by get(); checked there.
    health: readHealthSettings({
      'probe-concurrency': get('probe-concurrency'),
      'self-preservation-share': get('self-preservation-share'),
      'self-preservation-window-ms': get('self-preservation-window-ms'),
      'self-preservation-min-clients': get('self-preservation-min-clients'),
    }),
    configFile,
  }
}

/**
 * The address clients are told to use for this node: --client-address if set; else the address
 * it listens on, unless that is every interface (0.0.0.0, ::), which no client can dial: then the
 * host of its own peer address (a name the other members resolve) with the client port.
 */
export function clientAddressFor(settings: Pick<ServerSettings, 'clientAddress' | 'host' | 'members' | 'nodeId'>, boundPort: number): string {
  if (settings.clientAddress !== undefined) return settings.clientAddress
  const wildcard = settings.host === '0.0.0.0' || settings.host === '::' || settings.host === '[::]' || settings.host === ''
  const peer = settings.members.get(settings.nodeId)
  const host = wildcard && peer !== undefined ? parsePeerAddress(peer).host : settings.host
  return host.includes(':') ? `[${host}]:${boundPort}` : `${host}:${boundPort}`
}
