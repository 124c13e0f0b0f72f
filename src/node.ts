// Builds one Grace node from its injected parts: storage, clock and logger come in, the
// services and the HTTP app come out. main.ts passes the real ones; tests pass a temporary
// LevelDB and a ManualClock.

import type { FastifyInstance } from 'fastify'
import type { Logger as PinoLogger } from 'pino'
import { MemoryEphemeralStore } from './ap/node/memory-store.js'
import type { EphemeralStore } from './ap/store.js'
import { EphemeralCluster } from './consistency/ephemeral-cluster.js'
import type { MemberReport } from './cluster/members.js'
import { Membership } from './cluster/membership.js'
import type { Clock } from './core/clock.js'
import { type Logger, silentLogger } from './core/logger.js'
import { ConfigService } from './config/service.js'
import { ConfigStateMachine } from './config/state-machine.js'
import { ConsistencyProxy } from './consistency/proxy.js'
import { CompositeStateMachine } from './consistency/state-machine.js'
import { RaftNode, type RaftTransport } from './cp/node/raft-node.js'
import type { NodeId } from './cp/raft/types.js'
import { buildApp } from './http/app.js'
import type { ClusterStatus, MemberStatus } from './http/routes/cluster.js'
import { HealthProber, type ProbeFn } from './naming/health-prober.js'
import { HEALTH_DEFAULTS, type HealthSettings } from './naming/health-settings.js'
import { ClientLeases } from './naming/leases.js'
import { instanceIdOf } from './naming/model.js'
import { probe as networkProbe } from './naming/probe-io.js'
import { NamingService } from './naming/service.js'
import { NamingStateMachine } from './naming/state-machine.js'
import { NamingPush } from './naming/push.js'
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
  /**
   * With a transport: whether this node's connection to a peer is up now. A member whose
   * connection is down is not UP (cluster/members.ts), and owns no ephemeral clients.
   */
  peerReachable?: (peer: NodeId) => boolean
  /** Server heartbeats between members: the period (default 5 s). */
  heartbeatMs?: number
  /**
   * The cluster secret: requests that change the cluster (membership, leadership) must carry it
   * as `Authorization: Bearer <secret>`. Absent on a standalone node, which has no cluster to change.
   */
  adminSecret?: string
  /** Log compaction: every so many applied entries, keeping a tail of retained ones. */
  snapshotEvery?: number
  snapshotRetain?: number
  /** Probe concurrency and self-preservation. Default HEALTH_DEFAULTS. */
  health?: HealthSettings
  /** The health probe (TCP and HTTP over the network by default; tests may pass their own). */
  probe?: ProbeFn
}

/** How often services left empty are looked at (they go EMPTY_SERVICE_TTL_MS after emptying). */
const EMPTY_SWEEP_MS = 5_000

export interface GraceNode {
  readonly app: FastifyInstance
  readonly naming: NamingService
  readonly config: ConfigService
  readonly log: RaftNode
  /** The member table and its heartbeats; absent on a standalone node. */
  readonly membership: Membership | undefined
  /** What GET /v1/cluster/status answers. */
  clusterStatus(): ClusterStatus
  /**
   * The node listens for clients at `clientAddress` (host:port, as clients should dial it): it is
   * published to the other members in heartbeats, and to clients in /v1/cluster/members.
   */
  listening(clientAddress: string): void
  /** Ephemeral leases (beats, expiry, self-preservation) and the probes of persistent instances. */
  readonly leases: ClientLeases
  readonly prober: HealthProber
  /** Naming watches and deltas. */
  readonly push: NamingPush
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
  const view = new NamingView(opts.clock.now() * 1000, () => opts.clock.now())
  const health = opts.health ?? HEALTH_DEFAULTS
  // Before anything loads into the view, so that the delta log sees every change.
  const push = new NamingPush(view, { clock: opts.clock })
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
  let clientAddress: string | null = null
  let ready = false
  const raftMembers = (): NodeId[] => {
    const m = log.status().membership
    return [...m.voters, ...m.learners]
  }
  // Server heartbeats: each member tells the others its addresses, role, indexes and readiness,
  // and this node judges each UP, SUSPICIOUS or DOWN (cluster/members.ts).
  const membership = opts.transport
    ? new Membership({
        self: nodeId,
        transport: opts.transport,
        clock: opts.clock,
        logger,
        ...(opts.heartbeatMs !== undefined ? { periodMs: opts.heartbeatMs } : {}),
        // A node waiting to join has no membership yet: it heartbeats the members it knows of.
        members: () => (log.status().membership.voters.length === 0 ? [...(opts.peerAddresses?.keys() ?? [])] : raftMembers()),
        connected: opts.peerReachable ?? (() => true),
        report: () => selfReport(),
      })
    : undefined
  const cluster =
    opts.transport && membership
      ? new EphemeralCluster({
          self: nodeId,
          transport: opts.transport,
          clock: opts.clock,
          random: opts.random,
          logger,
          members: raftMembers,
          isUp: (peer) => membership.isUp(peer),
          loaded: () => membership.announce(),
        })
      : undefined
  if (membership && cluster) {
    membership.onChange(() => cluster.membersChanged())
    // A dropped connection is judged at once, not at the next check (members.ts says why).
    opts.transport!.onUnreachable(() => membership.refresh())
  }
  const selfReport = (): MemberReport => {
    const s = log.status()
    return {
      id: nodeId,
      clientAddress,
      peerAddress: opts.peerAddresses?.get(nodeId) ?? null,
      role: s.role,
      term: s.term,
      leaderId: s.leaderId,
      commitIndex: s.commitIndex,
      appliedIndex: s.appliedIndex,
      ready,
      distro: cluster ? { loaded: cluster.store.loaded, clients: cluster.store.size(), queuedSyncs: cluster.store.queuedSyncs() } : null,
    }
  }
  const clusterStatus = (): ClusterStatus => {
    const s = log.status()
    const me = selfReport()
    const addresses = log.memberAddresses()
    const kindOf = (id: NodeId) => (s.membership.voters.includes(id) ? 'voter' : s.membership.learners.includes(id) ? 'learner' : null)
    const members: MemberStatus[] = [
      {
        id: nodeId,
        self: true,
        kind: kindOf(nodeId),
        state: 'UP',
        reason: null,
        clientAddress: me.clientAddress,
        peerAddress: addresses[nodeId] ?? me.peerAddress,
        lastHeartbeatAgoMs: null,
        role: me.role,
        term: me.term,
        leaderId: me.leaderId,
        commitIndex: me.commitIndex,
        appliedIndex: me.appliedIndex,
        ready: me.ready,
        distro: me.distro,
      },
    ]
    const seen = new Map((membership?.views() ?? []).map((v) => [v.id, v]))
    for (const id of raftMembers()) {
      if (id === nodeId) continue
      const v = seen.get(id)
      const r = v?.report ?? null
      members.push({
        id,
        self: false,
        kind: kindOf(id),
        state: v?.state ?? 'DOWN',
        reason: v ? v.reason : 'not tracked yet',
        clientAddress: r?.clientAddress ?? null,
        peerAddress: addresses[id] ?? null,
        lastHeartbeatAgoMs: v?.lastHeardAgoMs ?? null,
        role: r?.role ?? null,
        term: r?.term ?? null,
        leaderId: r?.leaderId ?? null,
        commitIndex: r?.commitIndex ?? null,
        appliedIndex: r?.appliedIndex ?? null,
        ready: r?.ready ?? null,
        distro: r?.distro ?? null,
      })
    }
    return {
      id: s.id,
      role: s.role,
      term: s.term,
      leaderId: s.leaderId,
      commitIndex: s.commitIndex,
      appliedIndex: s.appliedIndex,
      lastIndex: s.lastIndex,
      membership: { voters: s.membership.voters, learners: s.membership.learners },
      ready,
      heartbeat: membership ? membership.thresholds() : null,
      members,
      distro: cluster
        ? {
            loaded: cluster.store.loaded,
            clients: cluster.store.size(),
            healthyMembers: cluster.healthyMembers(),
            queuedSyncs: cluster.store.queuedSyncs(),
            stats: cluster.store.stats() as unknown as Record<string, number>,
          }
        : null,
      // Declared below; this runs only once requests come.
      health: { selfPreservation: leases.selfPreservation(), probes: prober.status() },
    }
  }
  const ephemeral: EphemeralStore = cluster?.store ?? new MemoryEphemeralStore()
  const proxy = new ConsistencyProxy(log, ephemeral)
  const leases = cluster ? cluster.createLeases(opts.clock) : new ClientLeases(ephemeral, opts.clock)
  // Ephemeral instances reach the view through the AP store, whoever wrote them.
  ephemeral.subscribe((clientId, prev, next) => view.applyClientChange(clientId, prev?.instances ?? [], next?.instances ?? []))
  // A peer's batches of changes, like a sweep's, reach the view as one change per service.
  cluster?.store.setBulkApply((apply) => view.batch(apply))
  leases.configure({ selfPreservation: health.selfPreservation, logger, applyBulk: (apply) => view.batch(apply) })
  const naming = new NamingService(proxy, view, leases, opts.clock, cluster)
  cluster?.attach(naming, leases)
  // Persistent instances are probed by the Raft leader (health-prober.ts says why).
  const prober = new HealthProber({
    clock: opts.clock,
    random: opts.random,
    probe: opts.probe ?? networkProbe,
    source: {
      durableRevision: () => view.durableRevision(),
      probeTargets: () => view.probeTargets(),
      current: (t) => view.get(t.instance)?.persistent.get(instanceIdOf(t.instance)),
    },
    isProber: () => log.status().role === 'leader',
    write: (instance, healthy) => naming.writeProbeVerdict(instance, healthy),
    concurrency: health.probeConcurrency,
    logger,
  })

  const app = buildApp({
    naming,
    config,
    push,
    clusterStatus,
    clusterControl: log,
    ...(opts.adminSecret !== undefined ? { adminSecret: opts.adminSecret } : {}),
    // For Nacos clients' server lists: where clients reach the members that are UP.
    clientAddresses: () => clusterStatus().members.flatMap((m) => (m.state === 'UP' && m.clientAddress ? [m.clientAddress] : [])),
    ...(opts.logger ? { logger: opts.logger } : {}),
  })
  await app.ready()
  leases.start()
  // Standalone, there is nothing to load: the node serves as soon as it is built.
  if (!cluster) ready = true
  prober.start()
  let cancelEmptySweep = opts.clock.setTimer(EMPTY_SWEEP_MS, function sweepEmpty() {
    view.sweepEmpty(opts.clock.now())
    cancelEmptySweep = opts.clock.setTimer(EMPTY_SWEEP_MS, sweepEmpty)
  })

  return {
    app,
    naming,
    config,
    log,
    membership,
    clusterStatus,
    listening(address) {
      clientAddress = address
      membership?.announce()
    },
    leases,
    prober,
    push,
    async startEphemeral() {
      // Heartbeats first: loading waits for a peer that is UP.
      membership?.start()
      await cluster?.start()
      ready = true
      membership?.announce()
    },
    async close() {
      ready = false
      membership?.stop()
      await app.close()
      cluster?.stop()
      prober.stop()
      cancelEmptySweep()
      leases.stop()
      await log.close()
      config.close()
    },
  }
}
