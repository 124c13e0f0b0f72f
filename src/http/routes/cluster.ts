// What this node knows of the cluster: its Raft role, term, leader and indexes.

import type { FastifyInstance } from 'fastify'
import type { NodeId, Role } from '../../cp/raft/types.js'

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

export interface ClusterRouteDeps {
  clusterStatus(): ClusterStatus
}

export function registerClusterRoutes(app: FastifyInstance, deps: ClusterRouteDeps): void {
  // JSON only for now: the status is for operators and scripts.
  app.get('/v1/cluster/status', async (_request, reply) => reply.type('application/json; charset=utf-8').send(JSON.stringify(deps.clusterStatus())))
}
