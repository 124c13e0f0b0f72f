// The composition root: the only place that creates the real clock, opens LevelDB and listens.
// Settings come from flags, then environment variables, then defaults.

import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { SystemClock } from './core/clock.js'
import { PeerTransport, parsePeerAddress } from './cluster/transport.js'
import type { Logger } from './core/logger.js'
import { createGraceNode } from './node.js'
import { openDatabase } from './storage/db.js'
import { NODE_ID_PATTERN } from './core/validate.js'

const USAGE = `grace: a service registry and configuration center

Usage: grace [options]
  --host HOST        address to listen on       (GRACE_HOST, default 127.0.0.1)
  --port PORT        client port                (GRACE_PORT, default 8848)
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
  --snapshot-every N compact the Raft log every N applied entries (GRACE_SNAPSHOT_EVERY, default 10000)
  --snapshot-retain N entries kept behind the compaction point   (GRACE_SNAPSHOT_RETAIN, default 5000)
  --help             this text`

export interface ServerSettings {
  host: string
  port: number
  dataDir: string
  logLevel: string
  nodeId: string
  /** Peer addresses by node id, this node included; empty for a standalone node. */
  members: Map<string, string>
  /** A new node for a running cluster: no first configuration of its own. */
  join: boolean
  clusterSecret: string | undefined
  snapshotEvery: number
  snapshotRetain: number
}

function positiveInt(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 1e9) throw new Error(`${name} must be a whole number from 1`)
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
    if (members.has(id)) throw new Error(`member ${id} is listed twice`)
    members.set(id, address)
  }
  return members
}

export function readSettings(argv: string[], env: NodeJS.ProcessEnv): ServerSettings {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      'node-id': { type: 'string' },
      members: { type: 'string' },
      'cluster-secret': { type: 'string' },
      join: { type: 'boolean' },
      'snapshot-every': { type: 'string' },
      'snapshot-retain': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const port = Number(values.port ?? env.GRACE_PORT ?? 8848)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port: ${values.port ?? env.GRACE_PORT}`)
  const logLevel = values['log-level'] ?? env.GRACE_LOG_LEVEL ?? 'info'
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new Error(`invalid log level: ${logLevel}`)
  const nodeId = values['node-id'] ?? env.GRACE_NODE_ID ?? 'n1'
  if (!NODE_ID_PATTERN.test(nodeId)) throw new Error(`invalid node id ${JSON.stringify(nodeId)}: letters, digits, '.', '_' and '-', at most 64`)
  const members = parseMembers(values.members ?? env.GRACE_MEMBERS)
  const clusterSecret = values['cluster-secret'] ?? env.GRACE_CLUSTER_SECRET
  if (members.size > 0) {
    if (!members.has(nodeId)) throw new Error(`--members does not list this node (${nodeId})`)
    // CVE-2021-29441 in Nacos: peers must prove themselves, always. No default secret exists.
    if (members.size > 1 && (clusterSecret === undefined || clusterSecret.length < 16)) {
      throw new Error('a cluster needs --cluster-secret (or GRACE_CLUSTER_SECRET) of at least 16 characters')
    }
  }
  const join = values.join ?? ['1', 'true'].includes(env.GRACE_JOIN ?? '')
  if (join && members.size < 2) throw new Error('--join needs --members listing at least one running member and this node')
  return {
    host: values.host ?? env.GRACE_HOST ?? '127.0.0.1',
    port,
    dataDir: resolve(values['data-dir'] ?? env.GRACE_DATA_DIR ?? './data'),
    logLevel,
    nodeId,
    members,
    join,
    clusterSecret,
    snapshotEvery: positiveInt(values['snapshot-every'] ?? env.GRACE_SNAPSHOT_EVERY, '--snapshot-every', 10_000),
    snapshotRetain: positiveInt(values['snapshot-retain'] ?? env.GRACE_SNAPSHOT_RETAIN, '--snapshot-retain', 5_000),
  }
}

export async function main(argv: string[]): Promise<void> {
  let settings: ServerSettings
  try {
    settings = readSettings(argv, process.env)
  } catch (err) {
    console.error(`grace: ${(err as Error).message}\n\n${USAGE}`)
    process.exit(2)
  }
  // Buffered, so that a line per request is not a write per request; flushed every second and
  // at shutdown. A crash can lose the last second of lines, never data.
  const destination = pino.destination({ dest: 1, sync: false, minLength: 8192 })
  setInterval(() => destination.flush(), 1000).unref()
  const exit = (code: number) => destination.flush(() => process.exit(code))
  process.on('exit', () => {
    try {
      destination.flushSync() // best effort after a crash; a clean stop has flushed already
    } catch {}
  })
  const logger = pino({ level: settings.logLevel }, destination)
  mkdirSync(settings.dataDir, { recursive: true })
  const db = await openDatabase(settings.dataDir)
  const transport = settings.members.size > 1 ? peerTransport(settings, logger) : undefined
  const node = await createGraceNode({
    db,
    clock: new SystemClock(),
    random: Math.random,
    logger,
    nodeId: settings.nodeId,
    // A joining node has no first configuration: the cluster's log brings its membership.
    voters: settings.join ? [] : settings.members.size > 0 ? [...settings.members.keys()] : [settings.nodeId],
    peerAddresses: settings.members,
    ...(transport ? { peerReachable: (peer: string) => transport.stats()[peer]?.connected === true } : {}),
    snapshotEvery: settings.snapshotEvery,
    snapshotRetain: settings.snapshotRetain,
    ...(transport ? { transport } : {}),
  })
  // Handlers are registered by now (RaftNode.open); only then take peer traffic.
  if (transport) await transport.start()
  // Ephemeral data is loaded from a peer before this node answers clients.
  await node.startEphemeral()
  const address = await node.app.listen({ host: settings.host, port: settings.port })
  logger.info({ address, dataDir: settings.dataDir }, 'grace is ready')
  destination.flush()

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down: finishing requests in flight')
    try {
      await node.close()
      await transport?.close()
      await db.close()
      logger.info('stopped')
      exit(0)
    } catch (err) {
      logger.error({ err }, 'shutdown failed')
      exit(1)
    }
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
}

function peerTransport(settings: ServerSettings, logger: Logger): PeerTransport {
  const self = parsePeerAddress(settings.members.get(settings.nodeId)!)
  const peers = new Map([...settings.members].filter(([id]) => id !== settings.nodeId))
  // This node's own entry in --members is where it listens for peers.
  return new PeerTransport({ selfId: settings.nodeId, listen: { host: self.host, port: self.port }, peers, secret: settings.clusterSecret!, logger })
}
