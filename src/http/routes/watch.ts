// Push routes: POST /v1/ns/watch (one long poll for every service a client follows) and
// GET /v1/ns/delta (what changed since a revision, for gateways that mirror the registry).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { LIMITS } from '../../core/limits.js'
import { asFields } from '../../core/validate.js'
import { grace } from '../../gen/proto.js'
import { type NamingPush, type WatchChange, parseDeltaQuery, parseWatchRequest } from '../../naming/push.js'
import { JSON_TYPE, PROTOBUF_TYPE, encodeProtobuf, readBody, send, wantsProtobuf } from '../codec.js'

// JSON of each change, kept with the change (itself kept with the view's list until the service
// changes): thousands of watchers of one service share one encoding.
const changeJson = new WeakMap<WatchChange, string>()

export function registerWatchRoutes(app: FastifyInstance, push: NamingPush): void {
  app.post('/v1/ns/watch', { bodyLimit: LIMITS.maxWatchBodyBytes }, async (request, reply) => {
    const watch = parseWatchRequest(readBody(request, grace.v1.WatchRequest))
    // The response's 'close' (not the request's): it comes when the client goes away.
    const gone = new AbortController()
    const onClose = (): void => gone.abort()
    reply.raw.once('close', onClose)
    if (request.raw.socket?.destroyed) gone.abort()
    try {
      return sendChanges(request, reply, await push.watch(watch, gone.signal))
    } finally {
      reply.raw.off('close', onClose)
    }
  })

  app.get('/v1/ns/delta', async (request, reply) => {
    const { namespace, since } = parseDeltaQuery(asFields(request.query, 'query'))
    return send(request, reply, grace.v1.DeltaResponse, push.delta(namespace, since))
  })
}

function sendChanges(request: FastifyRequest, reply: FastifyReply, changed: WatchChange[]): FastifyReply {
  if (wantsProtobuf(request)) return reply.type(PROTOBUF_TYPE).send(encodeProtobuf(grace.v1.WatchResponse, { changed }))
  const parts = changed.map((c) => {
    let json = changeJson.get(c)
    if (json === undefined) changeJson.set(c, (json = JSON.stringify(c)))
    return json
  })
  return reply.type(JSON_TYPE).send(`{"changed":[${parts.join(',')}]}`)
}
