// Builds one Grace node from its injected parts: storage, clock and logger come in, the
// services and the HTTP app come out. main.ts passes the real ones; tests pass a temporary
// LevelDB and a ManualClock.

import type { FastifyInstance } from 'fastify'
import type { Logger as PinoLogger } from 'pino'
import { MemoryEphemeralStore } from './ap/node/memory-store.js'
import type { EphemeralStore } from './ap/store.js'
import { EphemeralCluster } from './consistency/ephemeral-cluster.js'
import type { Clock } from './core/clock.js'
import { type Logger, silentLogger } from './core/logger.js'
import { ConfigService } from './config/service.js'
import { ConfigStateMachine } from './config/state-machine.js'
import { ConsistencyProxy } from './consistency/proxy.js'
import { CompositeStateMachine } from './consistency/state-machine.js'
import { RaftNode, type RaftTransport } from './cp/node/raft-node.js'
import type { NodeId } from './cp/raft/types.js'
import { buildApp } from './http/app.js'
import { ClientLeases } from './naming/leases.js'
import { NamingService } from './naming/service.js'
import { NamingStateMachine } from './naming/state-machine.js'
import { NamingView } from './naming/view.js'
import type { Database } from './storage/db.js'

export interface GraceNodeOptions {
  db: Database
  clock: Clock
  /** Randomness for election timeouts (Math.random in production, a seed in tests). */
  random: () => number
  /** pino logger: request lines and errors. Omitted: silent. */
  logger?: PinoLogger
  /** This node's id: stable across restarts and address changes. Default n1. */
  nodeId?: NodeId
  /** The voters of a new cluster (ignored once the log has a membership). Default: this node alone. */
  voters?: readonly NodeId[]
  /** The authenticated peer transport, for a node with peers; main.ts creates it. */
  transport?: RaftTransport
  /** Peer addresses by node id (--members), this node's included. */
  peerAddresses?: ReadonlyMap<NodeId, string>
  /** With a transport: whether a peer can be reached now (Distro leaves out those it cannot). */
  peerReachable?: (peer: NodeId) => boolean
  /** Log compaction: every so many applied entries, keeping a tail of retained ones. */
  snapshotEvery?: number
  snapshotRetain?: number
}

export interface GraceNode {
  readonly app: FastifyInstance
  readonly naming: NamingService
  readonly config: ConfigService
  readonly log: RaftNode
  /**
   * In a cluster, once the peer transport runs: loads the ephemeral data from a peer and starts
   * Distro. Call before taking client traffic. Standalone: nothing to do.
   */
  startEphemeral(): Promise<void>
  /** Stops taking requests, finishes those in flight, then stops the services. Leaves db open. */
  close(): Promise<void>
}

export async function createGraceNode(opts: GraceNodeOptions): Promise<GraceNode> {
  const logger: Logger = opts.logger ?? silentLogger
  const view = new NamingView(opts.clock.now() * 1000)
  const configState = new ConfigStateMachine({ db: opts.db, logger })
  const stateMachine = new CompositeStateMachine({ naming: new NamingStateMachine(opts.db, view), config: configState })
  const nodeId = opts.nodeId ?? 'n1'
  // Standalone, a Raft group of one, which leads at once; in a cluster, one voter of several.
  const log = await RaftNode.open({
    id: nodeId,
    db: opts.db,
    stateMachine,
    clock: opts.clock,
    logger,
    random: opts.random,
    bootstrap: { voters: [...(opts.voters ?? [nodeId])], learners: [] },
    ...(opts.transport ? { transport: opts.transport } : {}),
    ...(opts.peerAddresses ? { peerAddresses: opts.peerAddresses } : {}),
    ...(opts.snapshotEvery ? { compactEvery: opts.snapshotEvery } : {}),
    ...(opts.snapshotRetain ? { retainEntries: opts.snapshotRetain } : {}),
  })
  const config = new ConfigService({ log, stateMachine: configState, db: opts.db, clock: opts.clock })
  // Standalone, ephemeral data lives in memory here; in a cluster, Distro replicates it.
  const cluster = opts.transport
    ? new EphemeralCluster({
        self: nodeId,
        transport: opts.transport,
        clock: opts.clock,
        random: opts.random,
        logger,
        members: () => {
          const m = log.status().membership
          return [...m.voters, ...m.learners]
        },
        reachable: opts.peerReachable ?? (() => true),
      })
    : undefined
  const ephemeral: EphemeralStore = cluster?.store ?? new MemoryEphemeralStore()
  const proxy = new ConsistencyProxy(log, ephemeral)
  const leases = cluster ? cluster.createLeases(opts.clock) : new ClientLeases(ephemeral, opts.clock)
  // Ephemeral instances reach the view through the AP store, whoever wrote them.
  ephemeral.subscribe((clientId, prev, next) => view.applyClientChange(clientId, prev?.instances ?? [], next?.instances ?? []))
  const naming = new NamingService(proxy, view, leases, opts.clock, cluster)
  cluster?.attach(naming, leases)

  const app = buildApp({ naming, config, clusterStatus: () => log.status(), clusterControl: log, ...(opts.logger ? { logger: opts.logger } : {}) })
  await app.ready()
  leases.start()

  return {
    app,
    naming,
    config,
    log,
    async startEphemeral() {
      await cluster?.start()
    },
    async close() {
      await app.close()
      cluster?.stop()
      leases.stop()
      await log.close()
      config.close()
    },
  }
}
