// The cluster, as operators and clients see it: this node's Raft status and every member as this
// node sees it (state from the server heartbeats, client and peer addresses), and the changes an
// operator makes (membership, a member's address, leadership). JSON only: these are for
// operators, scripts and client libraries choosing a server. Any node answers; changes are
// carried out by the leader, through the Raft log.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { fail } from '../../core/errors.js'
import { asFields, nodeId } from '../../core/validate.js'
import { parsePeerAddress } from '../../cluster/transport.js'
import type { MemberState } from '../../cluster/members.js'
import type { ConfigChange, Membership, NodeId, Role } from '../../cp/raft/types.js'
import type { HealthProberStatus } from '../../naming/health-prober.js'
import type { SelfPreservationStatus } from '../../naming/self-preservation.js'

/** One member as this node sees it: what /v1/cluster/status lists. */
export interface MemberStatus {
  readonly id: NodeId
  /** This node itself. */
  readonly self: boolean
  /** In the Raft configuration: a voter, a learner, or (a node waiting to join) neither yet. */
  readonly kind: 'voter' | 'learner' | null
  readonly state: MemberState
  /** Why it is not UP; null when it is. */
  readonly reason: string | null
  /** Where clients reach it, from its heartbeats; null until heard from. */
  readonly clientAddress: string | null
  /** Where peers reach it, from the membership (the Raft log, or --members for the first one). */
  readonly peerAddress: string | null
  /** Milliseconds since this node last heard from it; null if never, and for this node itself. */
  readonly lastHeartbeatAgoMs: number | null
  // From its latest heartbeat (this node's own values for itself); null until heard from.
  readonly role: Role | null
  readonly term: number | null
  readonly leaderId: NodeId | null
  readonly commitIndex: number | null
  readonly appliedIndex: number | null
  readonly ready: boolean | null
  readonly distro: { readonly loaded: boolean; readonly clients: number; readonly queuedSyncs: number } | null
}

export interface ClusterStatus {
  readonly id: NodeId
  readonly role: Role
  readonly term: number
  readonly leaderId: NodeId | null
  readonly commitIndex: number
  readonly appliedIndex: number
  readonly lastIndex: number
  readonly membership: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] }
  /** This node serves clients: started, ephemeral data loaded, not shutting down. */
  readonly ready: boolean
  /** The server heartbeat's period and thresholds; null on a standalone node. */
  readonly heartbeat: { readonly periodMs: number; readonly suspectAfterMs: number; readonly downAfterMs: number; readonly checkMs: number } | null
  /** Every member, this node first. */
  readonly members: readonly MemberStatus[]
  /** This node's Distro replica and its sync state; null on a standalone node. */
  readonly distro: {
    readonly loaded: boolean
    readonly clients: number
    /** The members that own ephemeral clients now (UP as this node sees them, itself included). */
    readonly healthyMembers: readonly NodeId[]
    /** Changes waiting to be synced to peers, over all peers. */
    readonly queuedSyncs: number
    readonly stats: Readonly<Record<string, number>>
  } | null
  /** Health on this node: self-preservation of its ephemeral clients, and the probes it runs. */
  readonly health: { readonly selfPreservation: SelfPreservationStatus | null; readonly probes: HealthProberStatus }
}

/** What the membership routes drive (RaftNode provides it). */
export interface ClusterControl {
  changeMembership(change: ConfigChange): Promise<Membership>
  transferLeadership(to: NodeId): Promise<NodeId>
  memberAddresses(): Record<NodeId, string>
}

export interface ClusterRouteDeps {
  clusterStatus(): ClusterStatus
  /** Absent in tests of other routes. */
  clusterControl?: ClusterControl
  /** The cluster secret, which requests that change the cluster must carry; absent standalone. */
  adminSecret?: string
}

const JSON_TYPE = 'application/json; charset=utf-8'

/** The fields of a member that /v1/cluster/members publishes. */
function listed(m: MemberStatus) {
  return {
    id: m.id,
    self: m.self,
    kind: m.kind,
    state: m.state,
    clientAddress: m.clientAddress,
    peerAddress: m.peerAddress,
    lastHeartbeatAgoMs: m.lastHeartbeatAgoMs,
    ready: m.ready,
  }
}

function peerAddress(value: unknown, what: string): string {
  if (typeof value !== 'string') fail('INVALID_ARGUMENT', `address must be ${what} peer address, host:port`)
  try {
    parsePeerAddress(value)
  } catch (err) {
    fail('INVALID_ARGUMENT', (err as Error).message)
  }
  return value
}

/**
 * Whether a request carries the cluster secret as `Authorization: Bearer <secret>`, compared in
 * constant time. The client port is open to every client of the registry; adding, moving or
 * removing a member, or moving the leadership, must take what the peers themselves need.
 */
export function carriesSecret(header: string | undefined, secret: string): boolean {
  const m = header === undefined ? null : /^Bearer (.+)$/.exec(header)
  if (m === null) return false
  const given = createHash('sha256').update(m[1]!).digest()
  const expected = createHash('sha256').update(secret).digest()
  return timingSafeEqual(given, expected)
}

export function registerClusterRoutes(app: FastifyInstance, deps: ClusterRouteDeps): void {
  const admin = (request: FastifyRequest): ClusterControl => {
    if (deps.adminSecret !== undefined && !carriesSecret(request.headers.authorization, deps.adminSecret)) {
      fail('UNAUTHENTICATED', 'changing the cluster takes the cluster secret: send Authorization: Bearer <secret>')
    }
    return control()
  }
  const control = (): ClusterControl => deps.clusterControl ?? fail('MEMBERSHIP_CONFLICT', 'this node cannot change its cluster')
  // voters, learners and addresses are the answer's original fields; `members` came later.
  const answer = (m: { voters: readonly NodeId[]; learners: readonly NodeId[] }) => ({
    voters: m.voters,
    learners: m.learners,
    addresses: control().memberAddresses(),
    members: deps.clusterStatus().members.map(listed),
  })

  app.get('/v1/cluster/status', async (_request, reply) => reply.type(JSON_TYPE).send(JSON.stringify(deps.clusterStatus())))

  app.get('/v1/cluster/members', async (_request, reply) => reply.type(JSON_TYPE).send(JSON.stringify(answer(deps.clusterStatus().membership))))

  // A new node, started with --join, is added as a learner and promoted by the leader once it
  // has caught up; `address` is where the other nodes reach its peer port. An id that is already
  // a member is refused (409): moving a member is PUT /v1/cluster/members/{id}, so that a typo
  // in an id cannot redirect a live member's traffic.
  app.post('/v1/cluster/members', async (request, reply) => {
    const ctl = admin(request)
    const body = asFields(request.body)
    const id = nodeId(body.id, 'id')
    const address = peerAddress(body.address, "the new node's")
    const { voters, learners } = deps.clusterStatus().membership
    if (voters.includes(id) || learners.includes(id)) {
      fail('MEMBERSHIP_CONFLICT', `${id} is already a member; to change its peer address, PUT /v1/cluster/members/${id}`)
    }
    const membership = await ctl.changeMembership({ op: 'addLearner', id, address })
    return reply.type(JSON_TYPE).send(JSON.stringify(answer(membership)))
  })

  // A member now reachable at another peer address (it was restarted elsewhere, with its data
  // directory): the address changes through the Raft log, and every node redials it there. Its
  // id, its data and its vote stay what they were.
  app.put<{ Params: { id: string } }>('/v1/cluster/members/:id', async (request, reply) => {
    const ctl = admin(request)
    const id = nodeId(request.params.id, 'id')
    const address = peerAddress(asFields(request.body).address, "the member's new")
    const membership = await ctl.changeMembership({ op: 'setAddress', id, address })
    return reply.type(JSON_TYPE).send(JSON.stringify(answer(membership)))
  })

  const remove = async (ctl: ClusterControl, id: NodeId) => answer(await ctl.changeMembership({ op: 'remove', id }))

  app.delete<{ Params: { id: string } }>('/v1/cluster/members/:id', async (request, reply) => {
    const ctl = admin(request)
    const id = nodeId(request.params.id, 'id')
    return reply.type(JSON_TYPE).send(JSON.stringify(await remove(ctl, id)))
  })

  // The first form of removal, kept for scripts written against it.
  app.delete('/v1/cluster/members', async (request, reply) => {
    const ctl = admin(request)
    const id = nodeId(asFields(request.query, 'query').id, 'id')
    return reply.type(JSON_TYPE).send(JSON.stringify(await remove(ctl, id)))
  })

  app.post('/v1/cluster/leader', async (request, reply) => {
    const ctl = admin(request)
    const id = nodeId(asFields(request.body).id, 'id')
    const leaderId = await ctl.transferLeadership(id)
    return reply.type(JSON_TYPE).send(JSON.stringify({ leaderId }))
  })
}
