// The cluster, as operators see it: this node's Raft status, the members with their peer
// addresses, and the two changes an operator makes (membership, leadership). JSON only: these
// are for operators and scripts. Any node answers; changes are carried out by the leader.

import type { FastifyInstance } from 'fastify'
import { fail } from '../../core/errors.js'
import { asFields, nodeId } from '../../core/validate.js'
import { parsePeerAddress } from '../../cluster/transport.js'
import type { ConfigChange, Membership, NodeId, Role } from '../../cp/raft/types.js'

export interface ClusterStatus {
  readonly id: NodeId
  readonly role: Role
  readonly term: number
  readonly leaderId: NodeId | null
  readonly commitIndex: number
  readonly appliedIndex: number
  readonly lastIndex: number
  readonly membership: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] }
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
}

const JSON_TYPE = 'application/json; charset=utf-8'

export function registerClusterRoutes(app: FastifyInstance, deps: ClusterRouteDeps): void {
  const control = (): ClusterControl => deps.clusterControl ?? fail('MEMBERSHIP_CONFLICT', 'this node cannot change its cluster')
  const members = (m: { voters: readonly NodeId[]; learners: readonly NodeId[] }) => ({ voters: m.voters, learners: m.learners, addresses: control().memberAddresses() })

  app.get('/v1/cluster/status', async (_request, reply) => reply.type(JSON_TYPE).send(JSON.stringify(deps.clusterStatus())))

  app.get('/v1/cluster/members', async (_request, reply) => reply.type(JSON_TYPE).send(JSON.stringify(members(deps.clusterStatus().membership))))

  // A new node, started with --join, is added as a learner and promoted by the leader once it
  // has caught up; `address` is where the other nodes reach its peer port.
  app.post('/v1/cluster/members', async (request, reply) => {
    const body = asFields(request.body)
    const id = nodeId(body.id, 'id')
    if (typeof body.address !== 'string') fail('INVALID_ARGUMENT', 'address must be the new node\'s peer address, host:port')
    try {
      parsePeerAddress(body.address)
    } catch (err) {
      fail('INVALID_ARGUMENT', (err as Error).message)
    }
    const membership = await control().changeMembership({ op: 'addLearner', id, address: body.address })
    return reply.type(JSON_TYPE).send(JSON.stringify(members(membership)))
  })

  app.delete('/v1/cluster/members', async (request, reply) => {
    const query = asFields(request.query, 'query')
    const id = nodeId(query.id, 'id')
    const membership = await control().changeMembership({ op: 'remove', id })
    return reply.type(JSON_TYPE).send(JSON.stringify(members(membership)))
  })

  app.post('/v1/cluster/leader', async (request, reply) => {
    const id = nodeId(asFields(request.body).id, 'id')
    const leaderId = await control().transferLeadership(id)
    return reply.type(JSON_TYPE).send(JSON.stringify({ leaderId }))
  })
}
