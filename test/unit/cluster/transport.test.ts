// The peer transport over real sockets on 127.0.0.1: Raft messages in order, calls with typed
// errors, reconnects, the mutual handshake (wrong secrets, unknown ids, garbage, oversized
// frames), bounded queues, liveness, and a close() that leaves nothing running.

import net from 'node:net'
import t, { type Test } from 'tap'
import { type DecodedFrame, FrameDecoder, decodeFrame, encodeFrame, encodeFrameField } from '../../../src/cluster/framing.js'
import { ackMac, confirmMac, newNonce } from '../../../src/cluster/handshake.js'
import { PeerError, PeerTransport, type PeerTransportOptions, parsePeerAddress } from '../../../src/cluster/transport.js'
import { GraceError } from '../../../src/core/errors.js'
import type { Logger } from '../../../src/core/logger.js'
import { raftToProto } from '../../../src/cp/node/raft-codec.js'
import type { Message, NodeId } from '../../../src/cp/raft/types.js'
import type { grace } from '../../../src/gen/proto.js'

const SECRET = 'test-cluster-secret-0123456789'
const OTHER_SECRET = 'another-secret-9876543210-xyz'

interface LogLine {
  level: 'info' | 'warn' | 'error'
  obj: unknown
  msg: string
}

class RecordingLogger implements Logger {
  readonly lines: LogLine[] = []
  private add(level: LogLine['level'], obj: object | string, msg?: string): void {
    this.lines.push(typeof obj === 'string' ? { level, obj: {}, msg: obj } : { level, obj, msg: msg ?? '' })
  }
  info(obj: object | string, msg?: string): void {
    this.add('info', obj, msg)
  }
  warn(obj: object | string, msg?: string): void {
    this.add('warn', obj, msg)
  }
  error(obj: object | string, msg?: string): void {
    this.add('error', obj, msg)
  }
  has(level: LogLine['level'], re: RegExp): boolean {
    return this.lines.some((l) => l.level === level && re.test(l.msg))
  }
  text(): string {
    return JSON.stringify(this.lines)
  }
}

interface TestNode {
  id: NodeId
  transport: PeerTransport
  logger: RecordingLogger
  received: Message[]
  unreachable: NodeId[]
}

const FAST = { backoff: { initialMs: 20, maxMs: 200 }, pingIntervalMs: 200, idleTimeoutMs: 1500 }

async function startNode(t: Test, id: NodeId, extra: Partial<PeerTransportOptions> = {}): Promise<TestNode> {
  const logger = new RecordingLogger()
  const transport = new PeerTransport({
    selfId: id,
    listen: { host: '127.0.0.1', port: 0 },
    peers: {},
    secret: SECRET,
    logger,
    ...FAST,
    ...extra,
  })
  const node: TestNode = { id, transport, logger, received: [], unreachable: [] }
  transport.onRaft((m) => node.received.push(m))
  transport.onUnreachable((p) => node.unreachable.push(p))
  await transport.start()
  t.teardown(() => transport.close())
  return node
}

/** Makes every node a peer of every other, at their bound ports. */
function mesh(nodes: TestNode[]): void {
  const peers = Object.fromEntries(nodes.map((n) => [n.id, `127.0.0.1:${n.transport.port}`]))
  for (const n of nodes) n.transport.setPeers(peers)
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function hb(from: NodeId, to: NodeId, context: number): Message {
  return { type: 'heartbeat', from, to, term: 3, commit: context, context }
}

function append(from: NodeId, to: NodeId, index: number, data: string): Message {
  return { type: 'append', from, to, term: 3, prevIndex: index - 1, prevTerm: 3, entries: [{ index, term: 3, type: 'normal', data }], commit: 0 }
}

/** A free port: bind, read, release. */
async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/** A raw client socket that records the frames it receives and whether it was closed. */
class RawPeer {
  readonly socket: net.Socket
  readonly frames: DecodedFrame[] = []
  closed = false
  private readonly decoder = new FrameDecoder(1 << 25)
  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port })
    this.socket.on('data', (c: Buffer) => {
      for (const b of this.decoder.pushAll(c)) this.frames.push(decodeFrame(b))
    })
    this.socket.on('error', () => {})
    this.socket.on('close', () => {
      this.closed = true
    })
  }
  connected(): Promise<void> {
    return new Promise((r) => this.socket.once('connect', () => r()))
  }
  send(frame: grace.peer.Frame.$Properties): void {
    this.socket.write(encodeFrame(frame, 1 << 25))
  }
  /** Dials as `id` and completes the handshake with `secret`. */
  async handshake(id: NodeId, target: NodeId, secret = SECRET): Promise<void> {
    await this.connected()
    const nonce = newNonce()
    this.send({ hello: { version: 1, nodeId: id, targetId: target, nonce } })
    await waitFor('HelloAck', () => this.frames.length > 0 || this.closed)
    const ack = this.frames.shift()!.helloAck!
    const fields = { dialerId: id, acceptorId: target, dialerNonce: nonce, acceptorNonce: ack.nonce! }
    this.send({ helloConfirm: { mac: confirmMac(secret, fields) } })
  }
}

t.test('raft messages flow both ways between three nodes, in order', async (t) => {
  const nodes = await Promise.all(['a', 'b', 'c'].map((id) => startNode(t, id)))
  mesh(nodes)
  const N = 500
  for (let i = 1; i <= N; i++) {
    for (const from of nodes) {
      for (const to of nodes) {
        if (from === to) continue
        from.transport.sendRaft(to.id, i % 5 === 0 ? append(from.id, to.id, i, `entry ${i} ✓`) : hb(from.id, to.id, i))
      }
    }
  }
  await waitFor('all messages', () => nodes.every((n) => n.received.length === 2 * N))
  for (const to of nodes) {
    for (const from of nodes) {
      if (from === to) continue
      const got = to.received.filter((m) => m.from === from.id)
      t.equal(got.length, N, `${from.id} -> ${to.id}: all ${N} arrived`)
      const seq = got.map((m) => (m.type === 'heartbeat' ? m.context : m.type === 'append' ? m.entries[0]!.index : -1))
      t.same(seq, Array.from({ length: N }, (_, i) => i + 1), `${from.id} -> ${to.id}: in order`)
      t.ok(got.every((m) => m.to === to.id))
    }
    t.ok(nodes.every((p) => p === to || to.transport.isConnected(p.id)), `${to.id} is connected to every peer`)
  }
  const appendMsg = nodes[1]!.received.find((m) => m.type === 'append' && m.from === 'a')
  t.strictSame(appendMsg, append('a', 'b', 5, 'entry 5 ✓'), 'a delivered message is exactly what was sent')
  t.equal(nodes[0]!.transport.stats().b!.dropped, 0)
  t.notOk(nodes.some((n) => n.logger.text().includes(SECRET)), 'the secret is never logged')
})

t.test('flushRaft writes what was queued at once; without it, frames wait for the end of the turn', async (t) => {
  const [a, b] = await Promise.all([startNode(t, 'a'), startNode(t, 'b')])
  mesh([a, b])
  await waitFor('connected', () => a.transport.isConnected('b'))
  a.transport.sendRaft('b', hb('a', 'b', 1))
  t.equal(a.transport.stats().b!.sentFrames, 0, 'queued until the end of the turn')
  a.transport.sendRaft('b', hb('a', 'b', 2))
  a.transport.flushRaft()
  t.equal(a.transport.stats().b!.sentFrames, 2, 'both written by flushRaft, before the turn ends')
  t.equal(a.transport.stats().b!.queuedFrames, 0)
  a.transport.flushRaft()
  t.equal(a.transport.stats().b!.sentFrames, 2, 'nothing queued: nothing more written')
  await waitFor('delivered', () => b.received.length === 2)
  t.same(b.received.map((m) => (m.type === 'heartbeat' ? m.context : -1)), [1, 2], 'in order')
})

t.test('large messages queued before the connection is up go out right after the handshake', async (t) => {
  // The dialer pipelines its queue behind HelloConfirm: the acceptor must raise its frame limit
  // between those frames, even when they arrive in one chunk.
  const [a, b] = await Promise.all([startNode(t, 'a'), startNode(t, 'b')])
  const data = 'ü'.repeat(100_000)
  a.transport.setPeers({ b: `127.0.0.1:${b.transport.port}` })
  a.transport.sendRaft('b', append('a', 'b', 1, data))
  a.transport.sendRaft('b', hb('a', 'b', 2))
  b.transport.setPeers({ a: `127.0.0.1:${a.transport.port}` })
  await waitFor('delivered', () => b.received.length === 2)
  t.strictSame(b.received[0], append('a', 'b', 1, data))
  t.notOk(b.logger.has('warn', /protocol error/))
})

t.test('calls: answers, remote error codes, unknown methods, timeouts', async (t) => {
  const [a, b] = await Promise.all([startNode(t, 'a'), startNode(t, 'b')])
  mesh([a, b])
  const seen: NodeId[] = []
  b.transport.onCall('echo', async (from, payload) => {
    seen.push(from)
    return Buffer.concat([Buffer.from(`${from}:`), payload])
  })
  b.transport.onCall('cas', async () => {
    throw new GraceError('CAS_MISMATCH', 'the md5 is not 1234')
  })
  b.transport.onCall('bug', async () => {
    throw new Error('something broke')
  })
  b.transport.onCall('sync-throw', () => {
    throw Object.assign(new Error('not the leader'), { code: 'NOT_LEADER' })
  })
  b.transport.onCall('never', () => new Promise<Uint8Array>(() => {}))
  t.throws(() => b.transport.onCall('echo', async () => new Uint8Array(0)), /already has a handler/)

  const answer = await a.transport.call('b', 'echo', Buffer.from('hi ✓'), 2000)
  t.equal(Buffer.from(answer).toString(), 'a:hi ✓')
  t.same(seen, ['a'], 'the handler is told the authenticated caller')

  // Many concurrent calls: each answer goes to its own caller.
  const many = await Promise.all(Array.from({ length: 200 }, (_, i) => a.transport.call('b', 'echo', Buffer.from(String(i)), 2000)))
  t.ok(many.every((r, i) => Buffer.from(r).toString() === `a:${i}`), '200 concurrent calls matched by id')

  const large = await a.transport.call('b', 'echo', Buffer.alloc(3 * 1024 * 1024, 1), 5000)
  t.equal(large.length, 3 * 1024 * 1024 + 2, 'a 3 MiB payload goes through')

  const expectPeerError = async (p: Promise<unknown>, code: string, remoteCode: string | null, name: string) => {
    try {
      await p
      t.fail(`${name}: should have failed`)
    } catch (err) {
      t.type(err, PeerError, name)
      t.equal((err as PeerError).code, code, `${name}: code`)
      t.equal((err as PeerError).remoteCode, remoteCode, `${name}: remote code`)
      return err as PeerError
    }
  }
  const cas = await expectPeerError(a.transport.call('b', 'cas', new Uint8Array(0), 2000), 'REMOTE', 'CAS_MISMATCH', 'GraceError travels')
  t.equal(cas?.remoteMessage, 'the md5 is not 1234')
  await expectPeerError(a.transport.call('b', 'bug', new Uint8Array(0), 2000), 'REMOTE', 'INTERNAL', 'plain error is INTERNAL')
  t.ok(b.logger.has('error', /call handler failed/), 'an INTERNAL failure is logged on the serving side')
  await expectPeerError(a.transport.call('b', 'sync-throw', new Uint8Array(0), 2000), 'REMOTE', 'NOT_LEADER', 'a synchronous throw with a code')
  await expectPeerError(a.transport.call('b', 'nope', new Uint8Array(0), 2000), 'REMOTE', 'NOT_FOUND', 'unknown method')
  const started = Date.now()
  await expectPeerError(a.transport.call('b', 'never', new Uint8Array(0), 150), 'TIMEOUT', null, 'timeout')
  t.ok(Date.now() - started < 1000, 'the timeout fires on time')
  await expectPeerError(a.transport.call('zz', 'echo', new Uint8Array(0), 150), 'UNREACHABLE', null, 'unknown peer')
  await expectPeerError(a.transport.call('b', 'echo', Buffer.alloc(17 * 1024 * 1024), 1000), 'TOO_LARGE', null, 'over the frame limit')
  // The connection survived all of that.
  t.equal(Buffer.from(await a.transport.call('b', 'echo', Buffer.from('x'), 2000)).toString(), 'a:x')

  // close() rejects calls in flight with CLOSED.
  const pending = a.transport.call('b', 'never', new Uint8Array(0), 10_000)
  await sleep(20)
  await a.transport.close()
  await expectPeerError(pending, 'CLOSED', null, 'pending call on close')
  await expectPeerError(a.transport.call('b', 'echo', new Uint8Array(0), 100), 'CLOSED', null, 'call after close')
  a.transport.sendRaft('b', hb('a', 'b', 1)) // never throws
})

t.test('a peer removed while calls to it are in flight: those are still answered, nothing new goes, then it is disconnected', async (t) => {
  const [a, b] = await Promise.all([startNode(t, 'a', { acceptUnknownPeers: true }), startNode(t, 'b', { acceptUnknownPeers: true })])
  mesh([a, b])
  let release: (() => void) | undefined
  b.transport.onCall('slow', () => new Promise<Uint8Array>((resolve) => (release = () => resolve(Buffer.from('late answer')))))
  b.transport.onCall('never', () => new Promise<Uint8Array>(() => {}))
  b.transport.onCall('echo', async (_from, payload) => payload)
  t.equal(Buffer.from(await a.transport.call('b', 'echo', Buffer.from('x'), 2000)).toString(), 'x')
  const slow = a.transport.call('b', 'slow', new Uint8Array(0), 5000)
  await waitFor('the slow call to arrive', () => release !== undefined)
  // Connections b accepted (from a): the one a dialled stays open while a's call is in flight.
  const inboundAtB = () => (b.transport as unknown as { inbound: Set<unknown> }).inbound.size
  t.equal(inboundAtB(), 1)
  // a drops b from its peers (b left the cluster) while b is still working on a's call.
  a.transport.setPeers({})
  await t.rejects(a.transport.call('b', 'echo', new Uint8Array(0), 500), { code: 'UNREACHABLE' }, 'no new call goes to a removed peer')
  t.notOk(a.transport.isConnected('b'), 'b is no longer a peer')
  release!()
  t.equal(Buffer.from(await slow).toString(), 'late answer', 'the call sent before the removal gets its answer')
  // With the last call settled, a closes the connection: b sees it go.
  await waitFor('the connection from a to close', () => inboundAtB() === 0)
  t.pass('a closed its connection to b once the call was answered')

  // A removed peer's call that never answers ends at its own timeout, and close() leaves nothing.
  a.transport.setPeers({ b: `127.0.0.1:${b.transport.port}` })
  await waitFor('a to reconnect to b', () => a.transport.isConnected('b'))
  const hanging = a.transport.call('b', 'never', new Uint8Array(0), 300)
  await sleep(20)
  a.transport.setPeers({})
  await t.rejects(hanging, { code: 'TIMEOUT' }, 'a call to a removed peer still times out')
  const again = a.transport.call('b', 'never', new Uint8Array(0), 10_000).catch((err: PeerError) => err.code)
  t.equal(await again, 'UNREACHABLE')
})

t.test('a peer that restarts is reconnected to, and messages flow again', async (t) => {
  const a = await startNode(t, 'a')
  let b = await startNode(t, 'b')
  mesh([a, b])
  a.transport.sendRaft('b', hb('a', 'b', 1))
  b.transport.sendRaft('a', hb('b', 'a', 1))
  await waitFor('first messages', () => b.received.length === 1 && a.received.length === 1)
  const port = b.transport.port

  await b.transport.close()
  await waitFor('a notices', () => !a.transport.isConnected('b') && a.unreachable.includes('b'))
  t.ok(a.logger.has('warn', /lost connection to peer/), 'the loss is logged')
  try {
    await a.transport.call('b', 'echo', new Uint8Array(0), 1000)
    t.fail('call to a down peer should fail')
  } catch (err) {
    t.equal((err as PeerError).code, 'UNREACHABLE', 'a call to a peer known to be down fails at once')
  }
  await sleep(300) // a few failed redials

  b = await startNode(t, 'b', { listen: { host: '127.0.0.1', port }, peers: { a: `127.0.0.1:${a.transport.port}` } })
  b.transport.onCall('echo', async (_from, p) => p)
  await waitFor('a reconnects', () => a.transport.isConnected('b'))
  t.ok(a.logger.has('info', /connected to peer/))
  a.transport.sendRaft('b', hb('a', 'b', 2))
  b.transport.sendRaft('a', hb('b', 'a', 2))
  await waitFor('messages after restart', () => b.received.length === 1 && a.received.length === 2)
  t.equal((b.received[0] as { context: number }).context, 2)
  t.equal(Buffer.from(await a.transport.call('b', 'echo', Buffer.from('back'), 2000)).toString(), 'back')
})

t.test('a peer that comes back and dials in is dialled back at once, not after the backoff', async (t) => {
  const slow = { backoff: { initialMs: 5_000, maxMs: 5_000 } }
  const a = await startNode(t, 'a', slow)
  let b = await startNode(t, 'b', slow)
  mesh([a, b])
  await waitFor('connected', () => a.transport.isConnected('b') && b.transport.isConnected('a'))
  const port = b.transport.port
  await b.transport.close()
  await waitFor('a notices', () => !a.transport.isConnected('b'))
  // a's next dial to b is about 5 s away; b comes back and dials a.
  b = await startNode(t, 'b', { ...slow, listen: { host: '127.0.0.1', port }, peers: { a: `127.0.0.1:${a.transport.port}` } })
  const back = Date.now()
  await waitFor('a dials b back', () => a.transport.isConnected('b'), 2_000)
  t.ok(Date.now() - back < 2_000, `a reconnected ${Date.now() - back} ms after b came back`)
})

t.test('a wrong secret is refused on both sides', async (t) => {
  const a = await startNode(t, 'a')
  const b = await startNode(t, 'b', { secret: OTHER_SECRET })
  mesh([a, b])
  for (let i = 1; i <= 10; i++) {
    a.transport.sendRaft('b', hb('a', 'b', i))
    b.transport.sendRaft('a', hb('b', 'a', i))
  }
  await waitFor('both sides log the failure', () =>
    [a, b].every((n) => n.logger.has('warn', /handshake failed: the peer does not know the cluster secret/) && n.logger.has('warn', /handshake failed: the dialer refused our HelloAck/)),
  )
  await sleep(200)
  t.same(a.received, [], 'nothing delivered to a')
  t.same(b.received, [], 'nothing delivered to b')
  t.notOk(a.transport.isConnected('b'))
  t.notOk(b.transport.isConnected('a'))
  t.ok(a.unreachable.includes('b'))
  for (const n of [a, b]) {
    t.notOk(n.logger.text().includes(SECRET) || n.logger.text().includes(OTHER_SECRET), 'no secret in the logs')
  }
})

t.test('a raw client that knows the wrong secret gets nothing through', async (t) => {
  const a = await startNode(t, 'a')
  a.transport.setPeers({ b: '127.0.0.1:1' }) // known, but down: only the raw client speaks as b
  const raw = new RawPeer(a.transport.port)
  await raw.handshake('b', 'a', OTHER_SECRET)
  raw.send({ raft: raftToProto(hb('b', 'a', 1)) })
  await waitFor('closed', () => raw.closed)
  t.same(a.received, [])
  t.ok(a.logger.has('warn', /dialer does not know the cluster secret/))
  t.equal(raw.frames[0]?.helloReject?.reason, 'authentication failed', 'the dialer is told why')
})

t.test('garbage, oversized lengths and frames before the handshake close the connection', async (t) => {
  const a = await startNode(t, 'a')
  const b = await startNode(t, 'b')
  mesh([a, b])

  const cases: [string, (raw: RawPeer) => void][] = [
    ['an HTTP request', (raw) => raw.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['a length over the handshake limit', (raw) => raw.socket.write(Buffer.from([0x00, 0x10, 0x00, 0x00]))],
    ['bytes that are not a frame', (raw) => raw.socket.write(Buffer.from([0, 0, 0, 3, 0xff, 0xff, 0xff]))],
    ['a raft message before the handshake', (raw) => raw.send({ raft: raftToProto(hb('b', 'a', 1)) })],
    ['a request before the handshake', (raw) => raw.send({ request: { id: 1, method: 'echo' } })],
    ['a Hello with the wrong version', (raw) => raw.send({ hello: { version: 2, nodeId: 'b', targetId: 'a', nonce: newNonce() } })],
    ['a Hello for another node', (raw) => raw.send({ hello: { version: 1, nodeId: 'b', targetId: 'x', nonce: newNonce() } })],
    ['a Hello with a short nonce', (raw) => raw.send({ hello: { version: 1, nodeId: 'b', targetId: 'a', nonce: Buffer.alloc(4) } })],
    ['a Hello claiming our own id', (raw) => raw.send({ hello: { version: 1, nodeId: 'a', targetId: 'a', nonce: newNonce() } })],
  ]
  for (const [name, act] of cases) {
    const raw = new RawPeer(a.transport.port)
    await raw.connected()
    act(raw)
    await waitFor(name, () => raw.closed)
    t.pass(`${name}: closed`)
  }
  t.ok(a.logger.has('warn', /protocol error/), 'protocol errors are logged')
  t.ok(a.logger.has('warn', /refused a connection/), 'refusals are logged')

  // After the handshake the limit is the full frame size: a larger length still closes. The raw
  // client speaks as r: as b, b's own redial would supersede it.
  a.transport.setPeers({ b: `127.0.0.1:${b.transport.port}`, r: '127.0.0.1:1' })
  const raw = new RawPeer(a.transport.port)
  await raw.handshake('r', 'a')
  raw.send({ ping: {} })
  await waitFor('pong', () => raw.frames.some((f) => f.kind === 'pong'))
  const header = Buffer.alloc(4)
  header.writeUInt32BE(16 * 1024 * 1024 + 1, 0)
  raw.socket.write(header)
  await waitFor('closed after oversized length', () => raw.closed)
  t.pass('an authenticated connection announcing 16 MiB + 1 is closed')

  // The process is fine, and real peers still talk.
  b.transport.sendRaft('a', hb('b', 'a', 7))
  await waitFor('b -> a still works', () => a.received.length === 1)
  t.same(a.received, [hb('b', 'a', 7)], 'no raw client got a message through')
})

t.test('an authenticated peer cannot speak for another node', async (t) => {
  const a = await startNode(t, 'a')
  a.transport.setPeers({ b: '127.0.0.1:1', c: '127.0.0.1:1' })
  const raw = new RawPeer(a.transport.port)
  await raw.handshake('b', 'a')
  raw.send({ raft: raftToProto(hb('c', 'a', 1)) }) // claims to be c
  raw.send({ raft: raftToProto(hb('b', 'x', 2)) }) // addressed to someone else
  raw.send({ raft: { type: 7, from: 'b', to: 'a', term: { low: 0, high: 0x7fffffff } as unknown as number } }) // term beyond 2^53
  raw.socket.write(encodeFrameField(5, [Buffer.from([0x08, 0x07, 0x12, 0x05, 0x62])], 1 << 20)) // a RaftMessage cut short
  raw.send({ raft: raftToProto(hb('b', 'a', 3)) })
  await waitFor('the honest message', () => a.received.length === 1)
  t.same(a.received, [hb('b', 'a', 3)], 'only the message from the authenticated id, to us, and valid')
  t.ok(a.logger.has('warn', /does not match the connection/))
  t.ok(a.logger.has('warn', /invalid raft message/))
  t.notOk(raw.closed, 'a bad raft message is dropped; the connection stays')
})

t.test('unknown node ids are refused unless acceptUnknownPeers', async (t) => {
  const a = await startNode(t, 'a')
  const c = await startNode(t, 'c')
  // c knows a; a does not know c.
  c.transport.setPeers({ a: `127.0.0.1:${a.transport.port}` })
  c.transport.sendRaft('a', hb('c', 'a', 1))
  await waitFor('refusal logged on both sides', () => a.logger.has('warn', /refused a connection/) && c.logger.has('warn', /cannot connect to peer/))
  t.match(JSON.stringify(c.logger.lines), /unknown node id/, 'the dialer learns why')
  t.same(a.received, [])
  t.notOk(c.transport.isConnected('a'))

  const open = await startNode(t, 'open', { acceptUnknownPeers: true })
  open.transport.onCall('who', async (from) => Buffer.from(from))
  c.transport.setPeers({ a: `127.0.0.1:${a.transport.port}`, open: `127.0.0.1:${open.transport.port}` })
  c.transport.sendRaft('open', hb('c', 'open', 1))
  await waitFor('accepted', () => open.received.length === 1)
  t.equal(Buffer.from(await c.transport.call('open', 'who', new Uint8Array(0), 2000)).toString(), 'c')
  // Adding c to a's peers lets it in.
  a.transport.setPeers({ c: `127.0.0.1:${c.transport.port}` })
  await waitFor('c reaches a once a knows it', () => c.transport.isConnected('a'), 5000)
  c.transport.sendRaft('a', hb('c', 'a', 2))
  await waitFor('delivered', () => a.received.length === 1)
})

t.test('the send queue to a down peer is bounded: drops, counts, reports', async (t) => {
  const port = await freePort()
  const a = await startNode(t, 'a', { peers: { b: `127.0.0.1:${port}` }, limits: { maxQueueFrames: 100 } })
  // The first dial is still in flight: messages queue up to the bound, then drop.
  for (let i = 1; i <= 1000; i++) a.transport.sendRaft('b', hb('a', 'b', i))
  let s = a.transport.stats().b!
  t.equal(s.queuedFrames, 100, 'the queue stops at its bound')
  t.equal(s.dropped, 900, 'the rest are counted as dropped')
  await Promise.resolve() // reports are deferred out of sendRaft
  t.ok(a.unreachable.includes('b'), 'a full queue reports the peer unreachable')
  t.ok(a.logger.has('warn', /send queue full/))
  await waitFor('the dial fails', () => a.transport.stats().b!.failures > 0)
  s = a.transport.stats().b!
  t.equal(s.queuedFrames, 0, 'a failed dial drops what was queued')
  t.equal(s.dropped, 1000)
  for (let i = 0; i < 10_000; i++) a.transport.sendRaft('b', hb('a', 'b', i))
  t.ok(a.transport.stats().b!.queuedFrames <= 100, 'the queue never grows past its bound')
  t.ok(a.logger.has('warn', /cannot connect to peer/))
  const lines = a.logger.lines.filter((l) => /cannot connect/.test(l.msg)).length
  await sleep(500)
  t.ok(a.logger.lines.filter((l) => /cannot connect/.test(l.msg)).length === lines, 'repeated failed dials are not logged each time')

  const bytes = await startNode(t, 'a2', { peers: { b: `127.0.0.1:${port}` }, limits: { maxQueueBytes: 10_000 } })
  for (let i = 1; i <= 100; i++) bytes.transport.sendRaft('b', append('a2', 'b', i, 'x'.repeat(1000)))
  const sb = bytes.transport.stats().b!
  t.ok(sb.queuedBytes <= 10_000 && sb.queuedFrames < 10 && sb.dropped > 90, `the byte bound holds too (${sb.queuedFrames} queued, ${sb.dropped} dropped)`)
})

t.test('a peer that stops answering is noticed by the idle timeout', async (t) => {
  // A fake acceptor: completes the handshake as "b", then reads and never answers anything.
  const sockets: net.Socket[] = []
  const fake = net.createServer((socket) => {
    sockets.push(socket)
    const decoder = new FrameDecoder(1 << 20)
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      for (const body of decoder.pushAll(chunk)) {
        const f = decodeFrame(body)
        if (f.kind !== 'hello') continue
        const nonce = newNonce()
        const mac = ackMac(SECRET, { dialerId: f.hello!.nodeId!, acceptorId: 'b', dialerNonce: f.hello!.nonce!, acceptorNonce: nonce })
        socket.write(encodeFrame({ helloAck: { nodeId: 'b', nonce, mac } }, 4096))
      }
    })
  })
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((r) => fake.close(() => r()))
  })
  const a = await startNode(t, 'a', {
    peers: { b: `127.0.0.1:${(fake.address() as net.AddressInfo).port}` },
    pingIntervalMs: 100,
    idleTimeoutMs: 400,
  })
  await waitFor('connected to the fake', () => a.transport.isConnected('b'))
  const since = Date.now()
  await waitFor('dropped as idle', () => a.unreachable.includes('b'), 3000)
  t.ok(Date.now() - since < 2000, 'within a few ping intervals of the idle timeout')
  t.match(JSON.stringify(a.logger.lines), /nothing heard for/)
})

t.test('a connection that never finishes the handshake is closed', async (t) => {
  const a = await startNode(t, 'a', { limits: { handshakeTimeoutMs: 300 } })
  const raw = new RawPeer(a.transport.port)
  await raw.connected()
  const since = Date.now()
  await waitFor('closed', () => raw.closed, 3000)
  t.ok(Date.now() - since >= 250, 'not before the deadline')
  t.ok(a.logger.has('warn', /no handshake within 300 ms/))
})

t.test('options are checked', async (t) => {
  const base = { selfId: 'a', listen: { host: '127.0.0.1', port: 0 }, peers: {}, logger: new RecordingLogger() }
  t.throws(() => new PeerTransport({ ...base, secret: 'short' }), /at least 16 bytes/)
  t.throws(() => new PeerTransport({ ...base, secret: undefined as unknown as string }), /at least 16 bytes/)
  t.throws(() => new PeerTransport({ ...base, secret: SECRET, selfId: '' }), /selfId/)
  t.throws(() => new PeerTransport({ ...base, secret: SECRET, peers: { b: 'nohost' } }), /not host:port/)
  t.same(parsePeerAddress('[::1]:7001'), { host: '::1', port: 7001 })
  t.same(parsePeerAddress('grace-0.grace:7001'), { host: 'grace-0.grace', port: 7001 })
  t.throws(() => parsePeerAddress('h:0'))
  t.throws(() => parsePeerAddress('h:70000'))
})

t.test('close() leaves no sockets or timers behind', async (t) => {
  await sleep(50) // let the previous tests' sockets finish closing
  const before = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').sort()
  const nodes: PeerTransport[] = []
  const logger = new RecordingLogger()
  for (const id of ['x', 'y', 'z']) {
    const tr = new PeerTransport({ selfId: id, listen: { host: '127.0.0.1', port: 0 }, peers: {}, secret: SECRET, logger, ...FAST })
    await tr.start()
    nodes.push(tr)
  }
  const peers = Object.fromEntries(nodes.map((n, i) => [['x', 'y', 'z'][i]!, `127.0.0.1:${n.port}`]))
  // A peer that is down, so that a retry timer is pending too.
  peers.down = `127.0.0.1:${await freePort()}`
  for (const n of nodes) n.setPeers(peers)
  nodes[1]!.onCall('never', () => new Promise<Uint8Array>(() => {}))
  await waitFor('connected', () => nodes[0]!.isConnected('y') && nodes[2]!.isConnected('x'))
  const pending = nodes[0]!.call('y', 'never', new Uint8Array(0), 60_000).catch((e: PeerError) => e.code)
  await sleep(50)
  await Promise.all(nodes.map((n) => n.close()))
  t.equal(await pending, 'CLOSED')
  await sleep(20)
  const after = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').sort()
  t.same(after, before, 'the same resources as before the transports existed')
})
