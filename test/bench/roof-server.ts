// The roof: the same fastify, no logger, the benchmarked routes doing nothing but parsing the JSON
// body (fastify's default parser) and answering a constant. Grace cannot beat this on the same
// machine, so Grace/roof says how much of the achievable throughput Grace keeps.
//
// Runs as its own process (`node roof-server.js --host H --port P`) so that it does not share an
// event loop with autocannon, just as Grace does not.

import type { FastifyReply, FastifyRequest } from 'fastify'
import { tuneV8ForServer } from '../../src/v8-tuning.js'

// The V8 settings Grace runs with (bin/grace.js), set before fastify loads as there: the roof
// runs the same fastify, and Grace/roof should compare what the two do, not how V8 was tuned.
tuneV8ForServer()
const { default: Fastify } = await import('fastify')
const { roofConfig, roofInstanceList } = await import('./fixtures.js')

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name)
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback
}

const app = Fastify({ logger: false })
// Serialised once: the roof does no per-request work beyond routing and body parsing, and Grace
// too keeps its instance-list answer encoded until the list changes.
const JSON_TYPE = 'application/json; charset=utf-8'
const constant = (value: object) => {
  const body = JSON.stringify(value)
  return async (_request: FastifyRequest, reply: FastifyReply) => reply.type(JSON_TYPE).send(body)
}

app.get('/readyz', constant({ status: 'READY' }))
app.post('/v1/ns/instances', constant({ ok: true }))
app.get('/v1/ns/instances', constant(roofInstanceList()))
app.put('/v1/ns/instances/beat', constant({ clientBeatInterval: 5000, registered: true }))
app.post('/v1/cs/configs', constant({ md5: '0123456789abcdef0123456789abcdef', revision: 1 }))
app.get('/v1/cs/configs', constant(roofConfig()))

await app.listen({ host: arg('--host', '127.0.0.1'), port: Number(arg('--port', '0')) })

process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0))
})
