// Config store routes (/v1/cs/...). Every body is JSON or protobuf; every answer is in the
// encoding the client asked for.

import type { FastifyInstance, FastifyRequest } from 'fastify'
import { fail } from '../../core/errors.js'
import { LIMITS } from '../../core/limits.js'
import type { Fields } from '../../core/validate.js'
import type { ConfigService } from '../../config/service.js'
import { grace } from '../../gen/proto.js'
import { readBody, send } from '../codec.js'

// Config bodies carry up to 1 MiB of content, which JSON escaping can blow up several times.
const WRITE = { bodyLimit: LIMITS.maxConfigBodyBytes }

export function registerConfigRoutes(app: FastifyInstance, config: ConfigService): void {
  app.get('/v1/cs/configs', async (request, reply) => {
    const found = await config.get(request.query as Fields)
    return send(request, reply, grace.v1.Config, found)
  })

  app.post('/v1/cs/configs', WRITE, async (request, reply) => {
    const result = await config.publish(readBody(request, grace.v1.Config))
    return send(request, reply, grace.v1.PublishConfigResponse, result)
  })

  app.delete('/v1/cs/configs', WRITE, async (request, reply) => {
    const { deleted } = await config.remove(deleteFields(request))
    return send(request, reply, grace.v1.Ack, { ok: true, deleted })
  })

  app.get('/v1/cs/configs/history', async (request, reply) => {
    const page = await config.history(request.query as Fields)
    return send(request, reply, grace.v1.ConfigHistory, page)
  })

  app.post('/v1/cs/configs/listen', WRITE, async (request, reply) => {
    const fields = readBody(request, grace.v1.ListenRequest)
    // The response's 'close', not the request's: since Node 16 a request emits 'close' as soon as
    // its body has been read, while the response's comes when the answer is sent or the client
    // goes away, which is what frees the listener.
    const gone = new AbortController()
    const onClose = (): void => gone.abort()
    reply.raw.once('close', onClose)
    if (request.raw.socket?.destroyed) gone.abort()
    try {
      const changed = await config.listen(fields, gone.signal)
      return send(request, reply, grace.v1.ListenResponse, { changed })
    } finally {
      reply.raw.off('close', onClose)
    }
  })
}

/** A delete names its config in the query string or in a body, not in both (which would win?). */
function deleteFields(request: FastifyRequest): Fields {
  const query = request.query as Fields
  if (request.body === undefined || request.body === null) return query
  if (Object.keys(query).length > 0) fail('INVALID_ARGUMENT', 'send the config in the query string or in the body, not both')
  return readBody(request, grace.v1.Config)
}
