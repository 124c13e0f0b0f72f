// One node's production AP stack, wired as createGraceNode (src/node.ts) wires it, over the
// simulated network: its member table (cluster/membership.ts, heartbeats over the network), an
// EphemeralCluster (Distro store, ownership, forwarding, leases moving with ownership), a
// NamingService with its NamingView and ClientLeases. The CP log is a stub: only ephemeral data
// is exercised. The simulator (distro-cluster.ts) and scripted scenarios build nodes with it.

import type { ClientRecord } from '../../src/ap/store.js'
import { Membership } from '../../src/cluster/membership.js'
import { EphemeralCluster } from '../../src/consistency/ephemeral-cluster.js'
import { ConsistencyProxy } from '../../src/consistency/proxy.js'
import type { ManualClock } from '../../src/core/clock.js'
import { GraceError } from '../../src/core/errors.js'
import type { Logger } from '../../src/core/logger.js'
import type { ReplicatedLog } from '../../src/cp/log.js'
import type { ClientLeases } from '../../src/naming/leases.js'
import { NamingService } from '../../src/naming/service.js'
import { NamingView } from '../../src/naming/view.js'
import type { SimNetwork } from './distro-network.js'

/** The CP side is not exercised: a log that refuses writes and has nothing to wait for. */
const stubLog: ReplicatedLog = {
  propose: () => Promise.reject(new GraceError('UNAVAILABLE', 'no CP log in the Distro simulation')),
  readBarrier: () => Promise.resolve(),
  settled: () => Promise.resolve(),
  status: () => ({ role: 'follower', commitIndex: 0, appliedIndex: 0 }),
  close: () => Promise.resolve(),
}

export interface DistroStack {
  readonly cluster: EphemeralCluster
  readonly membership: Membership
  readonly naming: NamingService
  readonly leases: ClientLeases
  readonly view: NamingView
}

export interface DistroStackOptions {
  readonly id: string
  /** Bumped at each restart: the network drops what an earlier incarnation sent. */
  readonly incarnation: number
  /** Every member's id. */
  readonly ids: readonly string[]
  readonly net: SimNetwork
  readonly clock: ManualClock
  readonly logger: Logger
  readonly random: () => number
  /** Whether the node reports itself ready (loaded) in its heartbeats. */
  readonly ready: () => boolean
}

/** Builds the node's stack; nothing is started (see startStack). */
export function buildDistroStack(o: DistroStackOptions): DistroStack {
  const transport = o.net.transport(o.id, o.incarnation)
  const view = new NamingView(o.clock.now() * 1000)
  // The production member table and its heartbeats: a member is UP once heard from, and stops
  // being UP when it is cut off (the transport's connection state is the link here) or a
  // heartbeat to it fails.
  const membership = new Membership({
    self: o.id,
    transport,
    clock: o.clock,
    logger: o.logger,
    members: () => o.ids,
    connected: (peer) => o.net.linked(o.id, peer),
    report: () => ({
      id: o.id,
      clientAddress: null,
      peerAddress: null,
      role: 'follower',
      term: 0,
      leaderId: null,
      commitIndex: 0,
      appliedIndex: 0,
      ready: o.ready(),
      distro: null,
    }),
  })
  const cluster = new EphemeralCluster({
    self: o.id,
    transport,
    clock: o.clock,
    random: o.random,
    logger: o.logger,
    members: () => o.ids,
    isUp: (peer) => membership.isUp(peer),
  })
  membership.onChange(() => cluster.membersChanged())
  const proxy = new ConsistencyProxy(stubLog, cluster.store)
  const leases = cluster.createLeases(o.clock)
  cluster.store.subscribe((clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined) => view.applyClientChange(clientId, prev?.instances ?? [], next?.instances ?? []))
  const naming = new NamingService(proxy, view, leases, o.clock, cluster)
  cluster.attach(naming, leases)
  return { cluster, membership, naming, leases, view }
}

/** Starts the stack's leases and heartbeats, then its cluster (load from a peer, then serve): resolves once it serves. */
export function startStack(s: DistroStack): Promise<void> {
  s.leases.start()
  s.membership.start()
  return s.cluster.start()
}

/** Stops what startStack started (a crash: the network stops delivering to it separately). */
export function stopStack(s: DistroStack): void {
  s.membership.stop()
  s.cluster.stop()
  s.leases.stop()
}
