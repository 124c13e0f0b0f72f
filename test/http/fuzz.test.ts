// Hostile input (issue 8, item 6): thousands of generated and mutated requests against a running
// server (a real process on a real socket), for every route, in JSON and protobuf, with wrong
// types, huge and deeply nested values, invalid UTF-8, slow, truncated and malformed HTTP. The
// server must never answer 5xx nor crash, every refusal must be a 4xx carrying a registered
// code, and what was stored before (in a namespace the fuzzer never names) must be unchanged.
//
// Seeded: GRACE_FUZZ_SEED picks the stream (default 1), GRACE_FUZZ_REQUESTS how many generated
// requests (default 3000). A failure prints the seed and the request that caused it.

import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ERROR_CODES } from '../../src/core/errors.js'
import { grace } from '../../src/gen/proto.js'
import { startServer } from '../helpers/process.js'
import { mulberry32 } from '../unit/ap/distro/fixtures.js'

const SEED = Number(process.env.GRACE_FUZZ_SEED ?? 1)
const REQUESTS = Number(process.env.GRACE_FUZZ_REQUESTS ?? 3000)
const KEEP_NS = 'keep'

type Random = () => number

/** Every route, with the fields a valid request would carry. */
const ROUTES: { method: string; path: string; fields: Record<string, unknown>; body: boolean; pb?: (o: Record<string, unknown>) => Uint8Array }[] = [
  { method: 'POST', path: '/v1/ns/instances', body: true, fields: { service: 'svc', ip: '10.0.0.1', port: 80, weight: 1, ephemeral: true, metadata: { a: 'b' }, cluster: 'c', enabled: true }, pb: (o) => grace.v1.Instance.encode(grace.v1.Instance.fromObject(o)).finish() },
  { method: 'DELETE', path: '/v1/ns/instances', body: true, fields: { service: 'svc', ip: '10.0.0.1', port: 80 } },
  { method: 'GET', path: '/v1/ns/instances', body: false, fields: { service: 'svc', healthyOnly: 'true', clusters: 'c' } },
  { method: 'PUT', path: '/v1/ns/instances/beat', body: true, fields: { service: 'svc', ip: '10.0.0.1', port: 80, clientId: '10.0.0.1:80' } },
  { method: 'PUT', path: '/v1/ns/instances', body: true, fields: { service: 'svc', ip: '10.0.0.1', port: 80, weight: 2, enabled: false, metadata: { a: 'b' } } },
  { method: 'PUT', path: '/v1/ns/instances/health', body: true, fields: { service: 'svc3', ip: '10.0.0.1', port: 80, healthy: false } },
  { method: 'PUT', path: '/v1/ns/clusters', body: true, fields: { service: 'svc3', cluster: 'c', healthCheck: { type: 'http', path: '/health', intervalMs: 5000, timeoutMs: 1000, expectedStatus: 200, port: 0 } }, pb: (o) => grace.v1.ClusterSettings.encode(grace.v1.ClusterSettings.fromObject(o)).finish() },
  { method: 'GET', path: '/v1/ns/clusters', body: false, fields: { service: 'svc3', cluster: 'c' } },
  { method: 'DELETE', path: '/v1/ns/clusters', body: true, fields: { service: 'svc3', cluster: 'c' } },
  { method: 'GET', path: '/v1/ns/services', body: false, fields: { pageNo: 1, pageSize: 10, service: 'svc' } },
  { method: 'POST', path: '/v1/ns/services', body: true, fields: { service: 'svc2', protectThreshold: 0.5, metadata: { a: 'b' }, ephemeral: false } },
  { method: 'DELETE', path: '/v1/ns/services', body: true, fields: { service: 'svc2' } },
  { method: 'GET', path: '/v1/cs/configs', body: false, fields: { dataId: 'd', group: 'g' } },
  { method: 'POST', path: '/v1/cs/configs', body: true, fields: { dataId: 'd', group: 'g', content: 'x: 1', type: 'yaml', casMd5: '' } },
  { method: 'DELETE', path: '/v1/cs/configs', body: true, fields: { dataId: 'd', group: 'g' } },
  { method: 'GET', path: '/v1/cs/configs/history', body: false, fields: { dataId: 'd', group: 'g', pageNo: 1 } },
  { method: 'POST', path: '/v1/cs/configs/listen', body: true, fields: { items: [{ dataId: 'd', group: 'g', md5: '' }], timeoutMs: 0 } },
  { method: 'GET', path: '/v1/cluster/status', body: false, fields: {} },
  { method: 'GET', path: '/v1/cluster/members', body: false, fields: {} },
  { method: 'POST', path: '/v1/cluster/members', body: true, fields: { id: 'n9', address: '127.0.0.1:1' } },
  { method: 'DELETE', path: '/v1/cluster/members', body: true, fields: { id: 'n9' } },
  { method: 'POST', path: '/v1/cluster/leader', body: true, fields: { id: 'n1' } },
  { method: 'GET', path: '/healthz', body: false, fields: {} },
  { method: 'GET', path: '/readyz', body: false, fields: {} },
]

function pick<T>(r: Random, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!
}

function randomString(r: Random, max: number): string {
  const n = Math.floor(r() * max)
  let s = ''
  for (let i = 0; i < n; i++) {
    const kind = r()
    // Mostly printable ASCII; some control characters, non-ASCII, emoji and lone surrogates.
    s += kind < 0.7 ? String.fromCharCode(32 + Math.floor(r() * 95)) : kind < 0.8 ? String.fromCharCode(Math.floor(r() * 32)) : kind < 0.9 ? String.fromCharCode(0x80 + Math.floor(r() * 0x2000)) : kind < 0.97 ? '😀' : '\ud800'
  }
  return s
}

function deep(depth: number, asArray: boolean): unknown {
  let v: unknown = 1
  for (let i = 0; i < depth; i++) v = asArray ? [v] : { a: v }
  return v
}

/** A value of some other kind than the field expects, or an extreme one of the same kind. */
function hostileValue(r: Random): unknown {
  switch (Math.floor(r() * 16)) {
    case 0: return null
    case 1: return true
    case 2: return -1
    case 3: return 1e308
    case 4: return 2 ** 53 + 1
    case 5: return 0.5
    case 6: return []
    case 7: return {}
    case 8: return randomString(r, 40)
    case 9: return 'x'.repeat(1 + Math.floor(r() * 70_000))
    case 10: return deep(1 + Math.floor(r() * 2000), r() < 0.5)
    case 11: return { __proto__: { polluted: true }, constructor: { prototype: { polluted: true } } }
    case 12: return ['a', 1, null]
    case 13: return Object.fromEntries(Array.from({ length: 1 + Math.floor(r() * 3000) }, (_, i) => [`k${i}`, 'v'.repeat(Math.floor(r() * 20))]))
    case 14: return '../../etc/passwd'
    default: return NaN
  }
}

function mutate(r: Random, fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...fields }
  const keys = Object.keys(out)
  for (let m = 1 + Math.floor(r() * 3); m > 0; m--) {
    const op = r()
    if (keys.length > 0 && op < 0.25) delete out[pick(r, keys)]
    else if (keys.length > 0 && op < 0.8) out[pick(r, keys)] = hostileValue(r)
    else out[randomString(r, 12) || 'extra'] = hostileValue(r)
  }
  // The fuzzer never names the namespace holding the data it must not change.
  if (typeof out.namespace === 'string' && out.namespace.toLowerCase().includes(KEEP_NS)) delete out.namespace
  return out
}

/** encodeURIComponent refuses lone surrogates; a URL cannot carry them anyway. */
function wellFormed(s: string): string {
  return s.replace(/[\ud800-\udfff]/g, '?')
}

function queryString(fields: Record<string, unknown>): string {
  const parts: string[] = []
  for (const [k, v] of Object.entries(fields)) {
    const s = typeof v === 'string' ? v : JSON.stringify(v) ?? 'undefined'
    parts.push(`${encodeURIComponent(wellFormed(k))}=${encodeURIComponent(wellFormed(s.slice(0, 20_000)))}`)
  }
  return parts.join('&')
}

interface Outcome {
  status: number
  body: string
  /** The error's code, decoded from JSON or protobuf as the answer's content type says. */
  code?: unknown
}

/** A request that gets no answer within this long is a hang, and a failure (except a long poll, which may hold). */
const ANSWER_WITHIN_MS = 10_000

async function send(url: string, method: string, path: string, headers: Record<string, string>, body: string | Uint8Array | undefined): Promise<Outcome> {
  // A listen request may hold for its timeout (30 s by default): give it less, and take silence for an answer.
  const longPoll = path.startsWith('/v1/cs/configs/listen')
  try {
    const res = await fetch(url + path, { method, headers, body: body as BodyInit | undefined, signal: AbortSignal.timeout(longPoll ? 300 : ANSWER_WITHIN_MS) })
    if (res.status >= 400 && res.headers.get('content-type')?.startsWith('application/x-protobuf')) {
      const bytes = new Uint8Array(await res.arrayBuffer())
      let code: unknown
      try {
        code = grace.v1.Error.decode(bytes).code
      } catch {
        code = undefined
      }
      return { status: res.status, body: `(protobuf, ${bytes.length} bytes)`, code }
    }
    return { status: res.status, body: await res.text() }
  } catch (err) {
    if (longPoll && (err as Error).name === 'TimeoutError') return { status: 200, body: '(held)' }
    throw err
  }
}

/** Raw bytes on a socket, for what fetch will not send: bad HTTP, invalid UTF-8, slow and cut bodies. */
function raw(url: string, chunks: (string | Uint8Array)[], gapMs = 0, endEarly = false): Promise<Outcome | null> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname)
    let data = ''
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(null)
    }, 3000)
    socket.on('data', (d) => (data += d.toString('latin1')))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data)
      resolve(m ? { status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) } : null)
    })
    socket.on('connect', async () => {
      for (const c of chunks) {
        socket.write(c)
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs))
      }
      if (endEarly) socket.destroy()
      else socket.end()
    })
  })
}

function problem(o: Outcome | null, what: string): string | null {
  if (o === null) return null // no answer: the server closed a connection it could not parse, which is allowed
  if (o.status >= 500) return `${what}: answered ${o.status} ${o.body.slice(0, 300)}`
  if (o.status >= 400) {
    let code: unknown = o.code
    if (code === undefined) {
      try {
        code = (JSON.parse(o.body) as { code?: unknown }).code
      } catch {
        return `${what}: a ${o.status} without a JSON body: ${o.body.slice(0, 200)}`
      }
    }
    if (typeof code !== 'string' || !(code in ERROR_CODES)) return `${what}: a ${o.status} without a registered code: ${o.body.slice(0, 200)}`
    if (ERROR_CODES[code as keyof typeof ERROR_CODES].status !== o.status) return `${what}: code ${code} with status ${o.status}`
  }
  return null
}

/** What the fuzzer must not change, as the API shows it. */
async function keptState(url: string): Promise<string> {
  const parts = await Promise.all([
    send(url, 'GET', `/v1/ns/instances?namespace=${KEEP_NS}&service=kept`, {}, undefined),
    send(url, 'GET', `/v1/ns/services?namespace=${KEEP_NS}`, {}, undefined),
    send(url, 'GET', `/v1/cs/configs?namespace=${KEEP_NS}&dataId=kept.yaml`, {}, undefined),
    send(url, 'GET', `/v1/cs/configs/history?namespace=${KEEP_NS}&dataId=kept.yaml`, {}, undefined),
  ])
  return parts.map((p) => `${p.status} ${p.body}`).join('\n')
}

t.test(`hostile input never gets a 5xx, always a coded 4xx, and changes nothing stored (seed ${SEED}, ${REQUESTS} requests)`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-fuzz-'))
  const server = await startServer(join(dir, 'data'))
  t.teardown(async () => {
    server.child.kill('SIGKILL')
    await server.exited
    rmSync(dir, { recursive: true, force: true })
  })
  const url = server.url
  const json = { 'content-type': 'application/json' }
  for (const [path, body] of [
    ['/v1/ns/instances', { namespace: KEEP_NS, service: 'kept', ip: '10.9.9.9', port: 9, ephemeral: false, metadata: { owner: 'fuzz-test' } }],
    ['/v1/cs/configs', { namespace: KEEP_NS, dataId: 'kept.yaml', content: 'kept: true' }],
  ] as const) {
    const res = await send(url, 'POST', path, json, JSON.stringify(body))
    t.equal(res.status, 200, `seeded ${path}: ${res.body}`)
  }
  const before = await keptState(url)

  const r = mulberry32(SEED)
  const problems: string[] = []
  const statuses = new Map<number, number>()
  const note = (o: Outcome | null, what: string) => {
    if (o) statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1)
    const p = problem(o, what)
    if (p && problems.length < 10) problems.push(p)
  }
  for (let i = 0; i < REQUESTS; i++) {
    const route = pick(r, ROUTES)
    const fields = mutate(r, route.fields)
    const what = `#${i} ${route.method} ${route.path}`
    const kind = r()
    try {
      if (!route.body || kind < 0.25) {
        note(await send(url, route.method, `${route.path}?${queryString(fields)}`, {}, undefined), `${what} (query)`)
      } else if (kind < 0.7) {
        let body: string
        try {
          body = JSON.stringify(fields)
        } catch {
          body = '{'
        }
        // Sometimes a JSON body cut short, or with bytes flipped.
        const cut = r()
        if (cut < 0.1) body = body.slice(0, Math.floor(r() * body.length))
        else if (cut < 0.2) body = body.replace(/[:,"{}]/, pick(r, ['', '::', '"', '\u0000']))
        note(await send(url, route.method, route.path, json, body), `${what} (json)`)
      } else if (kind < 0.85) {
        // Protobuf: a real message with hostile values where it encodes, else random bytes.
        let bytes: Uint8Array
        try {
          bytes = route.pb && r() < 0.5 ? route.pb(fields) : Uint8Array.from({ length: Math.floor(r() * 400) }, () => Math.floor(r() * 256))
        } catch {
          bytes = Uint8Array.from({ length: Math.floor(r() * 400) }, () => Math.floor(r() * 256))
        }
        note(await send(url, route.method, route.path, { 'content-type': 'application/x-protobuf', accept: 'application/x-protobuf' }, bytes), `${what} (protobuf)`)
      } else if (kind < 0.97) {
        // An unknown content type, or a body where none belongs, or a hostile Accept header.
        const headers: Record<string, string> = pick<Record<string, string>>(r, [{ 'content-type': 'text/plain' }, { 'content-type': 'application/xml' }, { accept: 'image/png' }, { 'content-type': 'application/json; charset=latin1' }])
        note(await send(url, route.method, route.path, headers, JSON.stringify(fields)), `${what} (headers)`)
      } else {
        // A body past the route's limit (64 KiB for naming and cluster routes, 8 MiB for configs).
        const pad = 'p'.repeat(route.path.startsWith('/v1/cs') ? 9 * 1024 * 1024 : 100 * 1024)
        try {
          note(await send(url, route.method, route.path, json, JSON.stringify({ ...fields, pad })), `${what} (huge)`)
        } catch (err) {
          // The server answers 413 as soon as the length is known and closes the connection;
          // fetch, still sending, sees the pipe close and never reads that answer.
          const code = (err as { cause?: { code?: string } }).cause?.code
          if (code !== 'EPIPE' && code !== 'ECONNRESET') throw err
        }
      }
    } catch (err) {
      if (problems.length < 10) problems.push(`${what}: the request failed: ${(err as Error).message} (${String((err as { cause?: { code?: string; message?: string } }).cause?.code ?? (err as { cause?: Error }).cause?.message)})`)
    }
  }

  // What fetch will not send.
  const invalidUtf8 = Uint8Array.from([0x7b, 0x22, 0x73, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x7d])
  const head = (len: number) => `POST /v1/ns/instances HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${len}\r\nconnection: close\r\n\r\n`
  note(await raw(url, [head(invalidUtf8.length), invalidUtf8]), 'invalid UTF-8 in a JSON body')
  note(await raw(url, [head(100), '{"service":"s'], 0, true), 'a body cut short (connection dropped)')
  note(await raw(url, [head(15), '{"se', 'rvi', 'ce"', ':"s', 'low"}'], 150), 'a slow body')
  note(await raw(url, ['GET /v1/ns/instances?service=a HTTP/1.1\r\nhost: x\r\nx-bad header: 1\r\n\r\n']), 'a malformed header')
  note(await raw(url, ['BREW /coffee HTCPCP/1.0\r\n\r\n']), 'not HTTP')
  note(await raw(url, [`GET /v1/ns/instances?service=a HTTP/1.1\r\nhost: x\r\nx-big: ${'h'.repeat(20_000)}\r\nconnection: close\r\n\r\n`]), 'headers past the limit')
  note(await raw(url, [`GET /${'p'.repeat(100_000)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`]), 'a very long URL')
  note(await raw(url, ['POST /v1/ns/instances HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 5\r\ncontent-length: 7\r\nconnection: close\r\n\r\n{}'] ), 'two content lengths')
  note(await raw(url, ['POST /v1/ns/instances HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n']), 'a bad chunk size')

  t.same(problems, [], `every answer below 500 and every refusal coded (seed ${SEED}; replay with GRACE_FUZZ_SEED=${SEED})`)
  t.comment(`statuses: ${[...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`)
  t.ok((statuses.get(400) ?? 0) > REQUESTS / 4, 'most requests were refused as malformed (else the fuzzer is too gentle)')
  const health = await send(url, 'GET', '/healthz', {}, undefined)
  t.equal(health.status, 200, 'the server is still up')
  t.equal(server.child.exitCode, null, 'and never exited')
  t.equal(await keptState(url), before, 'what was stored before is unchanged')
})
