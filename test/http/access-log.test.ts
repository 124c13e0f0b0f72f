// The request log: exactly one pino line per request, whatever the answer (success, a refusal
// before the handler ran, a 404, an error thrown by a handler), carrying the route pattern and
// never the query string or the body.

import pino from 'pino'
import t from 'tap'
import { startTestNode } from '../helpers/node.js'

interface Line {
  level: number
  msg: string
  reqId: string
  method: string
  route: string
  status: number
  ms: number
  time: number
}

t.test('one line per request, with route pattern, status and time', async (t) => {
  const written: string[] = []
  const logger = pino({ level: 'info' }, { write: (chunk: string) => void written.push(chunk) })
  const tn = await startTestNode({ logger })
  const secret = 'secret-service-name'
  const before = Date.now()
  const answers = [
    await tn.call('POST', '/v1/ns/instances', { service: secret, ip: '10.0.0.1', port: 80 }),
    await tn.call('GET', `/v1/ns/instances?service=${secret}`),
    await tn.call('POST', '/v1/ns/instances', '{"service":', {}), // refused by the parser, before the handler
    await tn.call('GET', '/nowhere'),
    await tn.call('POST', '/v1/ns/instances', { service: secret, ip: '10.0.0.2', port: 80, ephemeral: false }), // 409, thrown by the handler
    await tn.call('GET', '/healthz', undefined, { accept: 'text/html' }), // 406 from the route wrapper
    await tn.call('DELETE', '/v1/ns/instances', { service: secret, ip: '10.0.0.1', port: 80 }), // an async handler
    // A listen whose md5 is already stale: answered at once, by a handler that awaited first.
    await tn.call('POST', '/v1/cs/configs/listen', { items: [{ dataId: 'a', md5: '0123456789abcdef0123456789abcdef' }], timeoutMs: 30_000 }),
    await tn.call('HEAD', '/healthz'),
    // The compat scopes answer their errors and 404s with handlers of their own.
    await tn.call('GET', '/nacos/v1/ns/instance/list'), // 400: no serviceName
    await tn.call('GET', '/eureka/nowhere'),
    await tn.call('GET', '/nacos/v1/ns/operator/servers'),
  ]
  t.same(answers.map((a) => a.statusCode), [200, 200, 400, 404, 409, 406, 200, 200, 200, 400, 404, 200])
  const after = Date.now()
  await tn.close() // flushes the batched lines

  const lines = written.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line).filter((l) => l.msg === 'request')
  t.equal(lines.length, answers.length, 'one line per request')
  t.same(
    lines.map((l) => [l.method, l.route, l.status]),
    [
      ['POST', '/v1/ns/instances', 200],
      ['GET', '/v1/ns/instances', 200],
      ['POST', '/v1/ns/instances', 400],
      ['GET', 'none', 404],
      ['POST', '/v1/ns/instances', 409],
      ['GET', '/healthz', 406],
      ['DELETE', '/v1/ns/instances', 200],
      ['POST', '/v1/cs/configs/listen', 200],
      ['HEAD', '/healthz', 200],
      ['GET', '/nacos/v1/ns/instance/list', 400],
      ['GET', 'none', 404],
      ['GET', '/nacos/v1/ns/operator/servers', 200],
    ],
  )
  t.ok(lines.every((l) => l.level === 30 && typeof l.ms === 'number' && l.ms >= 0 && l.reqId !== ''), 'level info, a time and a request id')
  t.equal(new Set(lines.map((l) => l.reqId)).size, lines.length, 'request ids are distinct')
  t.ok(lines.every((l, i) => l.time >= before && l.time <= after && (i === 0 || l.time >= lines[i - 1]!.time)), 'each line has the time it was written, in order')
  t.notOk(written.join('').includes(secret), 'no names from the query string or body')
})

t.test('no request lines below info', async (t) => {
  const written: string[] = []
  const logger = pino({ level: 'warn' }, { write: (chunk: string) => void written.push(chunk) })
  const tn = await startTestNode({ logger })
  t.equal((await tn.call('GET', '/healthz')).statusCode, 200)
  await tn.close()
  t.notOk(written.join('').includes('"msg":"request"'))
})
