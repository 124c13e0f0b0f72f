// The AP side of a cluster node: Distro's store, who owns which client, and where ephemeral
// changes go. The healthy members are the Raft members this node sees UP in its member table
// (cluster/members.ts: server heartbeats and the state of the peer connections); they are worked
// out again whenever a member's state changes, and every second as a backstop. A change of that
// set moves clients between owners, and the leases follow: a client taken over gets a full
// timeout, a client handed over is expired by its new owner. Changes of a client owned elsewhere
// are forwarded to its owner over the peer transport (authenticated; nothing a client sends
// decides where a change is applied).
//
// Why UP, and not "not DOWN": a member stops being UP the moment its connection drops or a
// heartbeat call to it fails, while DOWN takes three heartbeat periods (15 s by default). A dead
// owner's clients must move within a second or two, not 15 s: until they do, every change
// forwarded to it fails and its clients' beats are answered with errors. The price is that a
// member that is merely slow for a moment (a call timing out) hands its clients over and takes
// them back when it is heard again, which Distro handles (takeover grace, versioned merges).

import { expiryAllowed } from '../ap/distro/takeover.js'
import { DistroNode, type DistroTransport } from '../ap/node/distro-node.js'
import type { Cancel, Clock } from '../core/clock.js'
import { ERROR_CODES, type ErrorCode, GraceError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { NodeId } from '../cp/raft/types.js'
import { ClientLeases } from '../naming/leases.js'
import type { BeatResult, EphemeralOp, EphemeralOwners, NamingService } from '../naming/service.js'
import {
  FORWARD_BEAT_METHOD,
  FORWARD_METHOD,
  FORWARD_REGISTER_METHOD,
  REGISTER_ANSWER,
  decodeBeatAnswer,
  decodeForwardAnswer,
  decodeForwardedBeat,
  decodeForwardedOp,
  decodeForwardedRegistration,
  decodeRegisterAnswer,
  encodeBeatAnswer,
  encodeForward,
  encodeForwardAnswer,
} from './ephemeral-forward.js'
import { SILENCE_METHOD, askSilence, decodeSilenceQuestion, encodeSilenceAnswer } from './ephemeral-silence.js'

/** How often the healthy members are worked out again without being told of a change. */
export const MEMBERSHIP_CHECK_MS = 1_000
const FORWARD_TIMEOUT_MS = 5_000
/** How long an owner waits for each member's answer before a removal (naming.silence). */
const SILENCE_TIMEOUT_MS = 2_000
/** At startup, how long to wait for a first peer connection before loading. */
const PEER_WAIT_MS = 3_000

export interface EphemeralClusterOptions {
  self: NodeId
  transport: DistroTransport
  clock: Clock
  random: () => number
  logger: Logger
  /** The cluster's members (Raft voters and learners), this node included. */
  members(): readonly NodeId[]
  /**
   * Whether a peer is UP as this node sees it now (cluster/membership.ts); only UP members own
   * clients. Call membersChanged() when the answer may have changed.
   */
  isUp(peer: NodeId): boolean
  /** Called when a node that joined has loaded its copy (to tell the members at once). */
  loaded?(): void
}

export class EphemeralCluster implements EphemeralOwners {
  readonly store: DistroNode
  private leases: ClientLeases | null = null
  private healthy: readonly NodeId[]
  private clusterSize = 1
  private cancelCheck: Cancel | null = null
  private started = false
  /** Started with --join and not yet loaded: see start(). */
  private joining = false
  private joinLoad: Promise<void> | null = null

  constructor(private readonly opts: EphemeralClusterOptions) {
    // Nobody until the first check: the store too starts with no members, so the first check
    // always hands it a view (and its ownership changes reach the leases).
    this.healthy = []
    this.store = new DistroNode({ self: opts.self, transport: opts.transport, clock: opts.clock, random: opts.random, logger: opts.logger, members: [] })
  }

  /** False while this node sees no majority of the members: see expiryAllowed. */
  mayExpire(): boolean {
    return expiryAllowed(this.healthy.length, this.clusterSize)
  }

  /** The leases of this node's clients: expired only by their owner, and only with a majority. */
  createLeases(clock: Clock): ClientLeases {
    return new ClientLeases(
      this.store,
      clock,
      () => this.mayExpire(),
      (clientId) => this.store.isResponsible(clientId),
      () => this.store.membersVersion,
    )
  }

  /** Serves forwarded changes with `naming`, and moves leases with ownership. */
  attach(naming: NamingService, leases: ClientLeases): void {
    this.leases = leases
    // Before it removes a client, the owner asks the others whether they heard from it.
    leases.configure({ peerSilence: (clientIds) => this.peerSilence(clientIds) })
    this.opts.transport.onCall(SILENCE_METHOD, async (_from, payload) => encodeSilenceAnswer(leases.silences(decodeSilenceQuestion(payload))))
    // And a member that heard from a client after another removed it writes the client again.
    this.store.setHeardSince((clientId, sinceMs) => leases.heardSince(clientId, sinceMs))
    // A record of a client this node is responsible for may arrive from a peer (pushed after a
    // partition, or synced by a former owner): the lease starts here, with a full timeout.
    this.store.subscribe((clientId, _prev, next, origin) => {
      if (origin === 'remote' && next && this.store.isResponsible(clientId)) leases.takeOver([clientId])
    })
    // The others count a member as an owner once it is UP, which it is while it loads (restarted,
    // or just added): without a copy it would answer "not registered" for clients it holds
    // nowhere yet. Refused, the change fails with UNAVAILABLE and the client retries.
    const refuseWhileLoading = () => {
      if (!this.store.loaded || this.joining) throw new GraceError('UNAVAILABLE', `${this.opts.self} is still loading its copy of the ephemeral data; retry`)
    }
    this.opts.transport.onCall(FORWARD_METHOD, async (_from, payload) => {
      const op = decodeForwardedOp(payload)
      refuseWhileLoading()
      return encodeForwardAnswer(await naming.executeForwarded(op))
    })
    this.opts.transport.onCall(FORWARD_BEAT_METHOD, async (_from, payload) => {
      const request = decodeForwardedBeat(payload)
      refuseWhileLoading()
      return encodeBeatAnswer((await naming.executeForwarded({ op: 'beat', request })) as BeatResult)
    })
    this.opts.transport.onCall(FORWARD_REGISTER_METHOD, async (_from, payload) => {
      const instance = decodeForwardedRegistration(payload)
      refuseWhileLoading()
      await naming.executeForwarded({ op: 'register', instance })
      return REGISTER_ANSWER
    })
  }

  /** Loads a copy of the AP data from a peer, then starts syncing and checking the members. */
  async start(): Promise<void> {
    if (this.opts.members().length === 0) {
      // A new node waiting to be added (--join) has no membership yet, and the members do not
      // count it as one of theirs: it loads its copy once it is a member, and owns nothing before
      // (or it would answer "not registered" for the clients it takes over).
      this.joining = true
      this.opts.logger.info('ephemeral data: loading a copy once this node is added to the cluster')
    } else {
      await this.loadCopy()
      this.store.start()
    }
    this.started = true
    this.checkMembers()
    const loop = () => {
      this.checkMembers()
      this.cancelCheck = this.opts.clock.setTimer(MEMBERSHIP_CHECK_MS, loop)
    }
    this.cancelCheck = this.opts.clock.setTimer(MEMBERSHIP_CHECK_MS, loop)
  }

  private async loadCopy(): Promise<void> {
    // The peer connections are being set up: give them a moment, or a restarted node would find
    // nobody to load from and serve nothing until the next verify round.
    const peers = this.opts.members().filter((id) => id !== this.opts.self)
    const deadline = this.opts.clock.now() + PEER_WAIT_MS
    while (peers.length > 0 && !peers.some((id) => this.opts.isUp(id)) && this.opts.clock.now() < deadline) {
      await new Promise<void>((resolve) => this.opts.clock.setTimer(50, resolve))
    }
    // Loading, this node owns nothing: the peers that are UP are the members, itself left out.
    this.store.setMembers(peers.filter((id) => this.opts.isUp(id)))
    const loaded = await this.store.load()
    this.opts.logger.info({ clients: this.store.size(), loaded }, loaded ? 'ephemeral data loaded from a peer' : 'no peer answered; starting with no ephemeral data')
  }

  /** A joining node has just been added: it loads its copy, then takes its share of the clients. */
  private loadAfterJoining(): void {
    this.joinLoad ??= this.loadCopy().then(() => {
      if (!this.started) return
      this.joining = false
      this.store.start()
      this.checkMembers()
      this.opts.loaded?.()
    })
  }

  /** A member's state changed: work out the healthy members now rather than at the next check. */
  membersChanged(): void {
    if (this.started) this.checkMembers()
  }

  /** The members that own clients now (this node included once it has loaded). */
  healthyMembers(): readonly NodeId[] {
    return this.healthy
  }

  stop(): void {
    this.started = false
    this.cancelCheck?.()
    this.cancelCheck = null
    this.store.stop()
  }

  forwardTarget(clientId: string): string | null {
    const owner = this.store.ownerOf(clientId)
    return owner === null || owner === this.opts.self ? null : owner
  }

  async forward(to: string, op: EphemeralOp): Promise<unknown> {
    const { method, payload } = encodeForward(op)
    let answer: Uint8Array
    try {
      answer = await this.opts.transport.call(to, method, payload, FORWARD_TIMEOUT_MS)
    } catch (err) {
      const e = err as { remoteCode?: string | null; message?: string }
      if (e.remoteCode && e.remoteCode in ERROR_CODES) throw new GraceError(e.remoteCode as ErrorCode, e.message ?? `error at ${to}`)
      throw new GraceError('UNAVAILABLE', `the node responsible for this client (${to}) did not answer (${e.message ?? String(err)}); retry`)
    }
    if (method === FORWARD_BEAT_METHOD) return decodeBeatAnswer(answer)
    return method === FORWARD_REGISTER_METHOD ? decodeRegisterAnswer(answer) : decodeForwardAnswer(answer)
  }

  /**
   * naming/leases.ts PeerSilence: asks every other member about the clients (askSilence). Those
   * this node sees UP must answer. The others are asked too, and may not answer: right after a
   * partition heals, views of the members change at different moments, and a member this node
   * does not count as UP yet may be the one the client beats (Distro simulator seed 140981); one
   * that is really down must not hold every removal back.
   */
  private peerSilence(clientIds: readonly string[]): Promise<ReadonlyMap<string, number>> {
    const peers = this.opts
      .members()
      .filter((id) => id !== this.opts.self)
      .map((id) => ({ id, mustAnswer: this.healthy.includes(id) }))
    return askSilence((to, method, payload) => this.opts.transport.call(to, method, payload, SILENCE_TIMEOUT_MS), peers, clientIds)
  }

  /** Recomputes the healthy members; on a change, moves ownership and the leases with it. */
  private checkMembers(): void {
    const members = this.opts.members()
    if (this.joining) {
      if (members.includes(this.opts.self)) this.loadAfterJoining()
      return
    }
    this.clusterSize = Math.max(1, members.length)
    const healthy = members.filter((id) => id === this.opts.self || this.opts.isUp(id))
    if (!healthy.includes(this.opts.self)) healthy.push(this.opts.self)
    healthy.sort()
    if (healthy.length === this.healthy.length && healthy.every((id, i) => id === this.healthy[i])) return
    this.opts.logger.info({ healthy, was: this.healthy }, 'ephemeral data: the healthy members changed')
    const couldExpire = this.mayExpire()
    this.healthy = healthy
    const changes = this.store.setMembers(healthy)
    const taken: string[] = []
    const given: string[] = []
    for (const c of changes) {
      if (c.to === this.opts.self) taken.push(c.clientId)
      else given.push(c.clientId)
    }
    this.leases?.takeOver(taken)
    this.leases?.handOver(given)
    // Back in a majority after a time without one: the beats of that time may have gone to the
    // other side, so every client owned here gets a full timeout before it can expire.
    if (!couldExpire && this.mayExpire()) this.leases?.refreshAll(this.ownedClients())
  }

  private *ownedClients(): IterableIterator<string> {
    for (const record of this.store.clients()) if (this.store.isResponsible(record.clientId)) yield record.clientId
  }
}
