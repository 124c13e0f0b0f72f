// Naming routes: instances, heartbeats and services under /v1/ns.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { fail } from '../../core/errors.js'
import { type Fields, asFields, paging, queryBool } from '../../core/validate.js'
import { grace } from '../../gen/proto.js'
import type { NamingService, ServiceSummary } from '../../naming/service.js'
import {
  parseBeat,
  parseCluster,
  parseClusterRef,
  parseClusterSettings,
  parseGroup,
  parseInstanceHealth,
  parseInstance,
  parseInstancePatch,
  parseInstanceQuery,
  parseInstanceRef,
  parseNamespace,
  parseServiceCreate,
  parseServiceName,
  parseServicePatch,
} from '../../naming/validate.js'
import type { InstanceList } from '../../naming/view.js'
import { JSON_TYPE, type MessageType, PROTOBUF_TYPE, constantAnswer, encodeProtobuf, readBody, send, sendConstant, wantsProtobuf } from '../codec.js'

export interface NamingRouteDeps {
  naming: NamingService
}

const {
  Ack,
  BeatResponse,
  ClusterList,
  ClusterSettings,
  Instance,
  InstanceHealthRequest,
  InstanceList: InstanceListMessage,
  InstanceRef,
  Service,
  ServiceList,
  UpdateInstanceRequest,
} = grace.v1

const ACK_OK = constantAnswer(Ack, { ok: true })

export function registerNamingRoutes(app: FastifyInstance, { naming }: NamingRouteDeps): void {
  // Registration and query answer without a promise when they can (ephemeral data), as these
  // two are most of a registry's traffic.
  app.post('/v1/ns/instances', (request, reply) => {
    const pending = naming.registerNow(parseInstance(readBody(request, Instance)))
    if (!pending) return sendConstant(request, reply, ACK_OK)
    return pending.then(() => sendConstant(request, reply, ACK_OK))
  })

  app.delete('/v1/ns/instances', async (request, reply) => {
    const { deleted } = await naming.deregister(parseInstanceRef(bodyOrQuery(request, InstanceRef)))
    return send(request, reply, Ack, { ok: true, deleted })
  })

  // PUT is PATCH under the verb Nacos uses for the same change.
  const updateInstance = async (request: FastifyRequest, reply: FastifyReply) => {
    const { ref, patch } = parseInstancePatch(unwrapMetadata(request, readBody(request, UpdateInstanceRequest)))
    await naming.update(ref, patch)
    return sendConstant(request, reply, ACK_OK)
  }
  app.patch('/v1/ns/instances', updateInstance)
  app.put('/v1/ns/instances', updateInstance)

  app.put('/v1/ns/instances/health', async (request, reply) => {
    const { fields, fromQuery } = bodyOrQueryFrom(request, InstanceHealthRequest)
    const { ref, healthy } = parseInstanceHealth(fields, fromQuery)
    await naming.setHealth(ref, healthy)
    return sendConstant(request, reply, ACK_OK)
  })

  app.put('/v1/ns/clusters', async (request, reply) => {
    const { ref, healthCheck } = parseClusterSettings(readBody(request, ClusterSettings))
    await naming.putCluster(ref, healthCheck)
    return sendConstant(request, reply, ACK_OK)
  })

  app.get('/v1/ns/clusters', async (request, reply) => {
    const query = asFields(request.query)
    const cluster = query.cluster === undefined ? undefined : parseCluster(query.cluster)
    const list = await naming.getClusters(parseServiceName(query), cluster, queryBool(query.stale, 'stale', false))
    return send(request, reply, ClusterList, list)
  })

  app.delete('/v1/ns/clusters', async (request, reply) => {
    const { deleted } = await naming.removeCluster(parseClusterRef(bodyOrQuery(request, ClusterSettings)))
    return send(request, reply, Ack, { ok: true, deleted })
  })

  app.get('/v1/ns/instances', (request, reply) => {
    const query = parseInstanceQuery(asFields(request.query))
    const now = naming.listNow(query)
    if (now) return sendInstanceList(request, reply, now)
    return naming.list(query).then((list) => sendInstanceList(request, reply, list))
  })

  app.put('/v1/ns/instances/beat', (request, reply) => {
    const answer = naming.beat(parseBeat(bodyOrQuery(request, InstanceRef)))
    if (!(answer instanceof Promise)) return send(request, reply, BeatResponse, answer)
    return answer.then((forwarded) => send(request, reply, BeatResponse, forwarded))
  })

  app.get('/v1/ns/services', async (request, reply) => {
    const query = asFields(request.query)
    const stale = queryBool(query.stale, 'stale', false)
    if (query.service !== undefined) return sendService(request, reply, Service, await naming.getService(parseServiceName(query), stale))
    const { pageNo, pageSize } = paging(query)
    const group = query.group === undefined ? undefined : parseGroup(query.group)
    const page = await naming.listServices(parseNamespace(query.namespace), group, pageNo, pageSize, stale)
    return sendService(request, reply, ServiceList, page)
  })

  app.post('/v1/ns/services', async (request, reply) => {
    await naming.createService(parseServiceCreate(unwrapMetadata(request, readBody(request, Service))))
    return sendConstant(request, reply, ACK_OK)
  })

  app.patch('/v1/ns/services', async (request, reply) => {
    const { name: service, patch } = parseServicePatch(unwrapMetadata(request, readBody(request, Service)))
    await naming.updateService(service, patch)
    return sendConstant(request, reply, ACK_OK)
  })

  app.delete('/v1/ns/services', async (request, reply) => {
    const { deleted } = await naming.removeService(parseServiceName(bodyOrQuery(request, Service)))
    return send(request, reply, Ack, { ok: true, deleted })
  })
}

/** DELETE, beat and health take their fields from the query string or from a body, not from both. */
function bodyOrQuery(request: FastifyRequest, type: MessageType): Fields {
  return bodyOrQueryFrom(request, type).fields
}

function bodyOrQueryFrom(request: FastifyRequest, type: MessageType): { fields: Fields; fromQuery: boolean } {
  const query = asFields(request.query)
  if (request.body === undefined || request.body === null) return { fields: query, fromQuery: true }
  if (Object.keys(query).length > 0) fail('INVALID_ARGUMENT', 'send the fields in the query string or in the body, not both')
  return { fields: readBody(request, type), fromQuery: false }
}

/** Protobuf carries metadata in a StringMap (maps have no presence); JSON carries the map itself. */
function unwrapMetadata(request: FastifyRequest, fields: Fields): Fields {
  if (!(request.body instanceof Uint8Array) || fields.metadata === undefined) return fields
  return { ...fields, metadata: (fields.metadata as { entries?: unknown }).entries ?? {} }
}

function sendService(request: FastifyRequest, reply: FastifyReply, type: MessageType, value: ServiceSummary | { services: readonly ServiceSummary[] }) {
  if (!wantsProtobuf(request)) return send(request, reply, type, value)
  const wrap = (s: ServiceSummary) => ({ ...s, metadata: { entries: s.metadata } })
  const wire = 'services' in value ? { ...value, services: value.services.map(wrap) } : wrap(value)
  return reply.type(PROTOBUF_TYPE).send(encodeProtobuf(type, wire))
}

// Encoded answers, kept as long as the view keeps the InstanceList (until the service changes).
const jsonAnswers = new WeakMap<InstanceList, string>()
const protobufAnswers = new WeakMap<InstanceList, Buffer>()

function sendInstanceList(request: FastifyRequest, reply: FastifyReply, list: InstanceList): FastifyReply {
  if (wantsProtobuf(request)) {
    let body = protobufAnswers.get(list)
    if (!body) protobufAnswers.set(list, (body = encodeProtobuf(InstanceListMessage, list)))
    return reply.type(PROTOBUF_TYPE).send(body)
  }
  let body = jsonAnswers.get(list)
  if (!body) jsonAnswers.set(list, (body = JSON.stringify(list)))
  return reply.type(JSON_TYPE).send(body)
}
