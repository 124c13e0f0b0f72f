// The composition root: the only place that creates the real clock, opens LevelDB and listens.
// Settings come from flags, then environment variables, then a config file, then defaults
// (settings.ts).

import { mkdirSync } from 'node:fs'
import pino from 'pino'
import { SystemClock } from './core/clock.js'
import { PeerTransport, parsePeerAddress } from './cluster/transport.js'
import type { Logger } from './core/logger.js'
import { createGraceNode } from './node.js'
import { type ServerSettings, USAGE, clientAddressFor, readSettings } from './settings.js'
import { openDatabase } from './storage/db.js'

export type { ServerSettings } from './settings.js'
export { readSettings } from './settings.js'

export async function main(argv: string[]): Promise<void> {
  let settings: ServerSettings
  try {
    const read = readSettings(argv, process.env)
    if (read === 'help') {
      console.log(USAGE)
      process.exit(0)
    }
    settings = read
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
  if (settings.configFile?.readableByOthers && settings.clusterSecret !== undefined) {
    logger.warn({ config: settings.configFile.path }, 'the config file can be read by other users; it may hold the cluster secret: chmod 600 it')
  }
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
    heartbeatMs: settings.memberHeartbeatMs,
    snapshotEvery: settings.snapshotEvery,
    snapshotRetain: settings.snapshotRetain,
    health: settings.health,
    ...(transport ? { transport, adminSecret: settings.clusterSecret! } : {}),
  })
  // Handlers are registered by now (RaftNode.open); only then take peer traffic.
  if (transport) await transport.start()
  // Ephemeral data is loaded from a peer before this node answers clients.
  await node.startEphemeral()
  const address = await node.app.listen({ host: settings.host, port: settings.port })
  const clientAddress = clientAddressFor(settings, (node.app.server.address() as { port: number }).port)
  node.listening(clientAddress)
  logger.info({ address, clientAddress, nodeId: settings.nodeId, dataDir: settings.dataDir }, 'grace is ready')
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
  // This node's own entry in --members is where it listens for peers. It accepts any node that
  // proves it holds the secret, member or not: a follower that is behind knows the members as of
  // its own log, and the current leader may be a node that log has not added yet (or has
  // removed, and added back since); refusing it, the follower could never receive the entries
  // that would tell it. Raft decides what a non-member's messages may do (PreVote and
  // CheckQuorum keep a removed node from disturbing the cluster).
  return new PeerTransport({ selfId: settings.nodeId, listen: { host: self.host, port: self.port }, peers, secret: settings.clusterSecret!, logger, acceptUnknownPeers: true })
}
