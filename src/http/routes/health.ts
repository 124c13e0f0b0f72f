// Liveness and readiness, for load balancers and Kubernetes probes.

import type { FastifyInstance } from 'fastify'
import { grace } from '../../gen/proto.js'
import { send } from '../codec.js'

export interface HealthDeps {
  /** False while the node is starting or shutting down: it should get no traffic. */
  isReady(): boolean
}

export function registerHealthRoutes(app: FastifyInstance, deps: HealthDeps): void {
  app.get('/healthz', (request, reply) => send(request, reply, grace.v1.Health, { status: 'UP' }))
  app.get('/readyz', (request, reply) => {
    const ready = deps.isReady()
    return send(request, reply, grace.v1.Health, { status: ready ? 'READY' : 'NOT_READY' }, ready ? 200 : 503)
  })
}
