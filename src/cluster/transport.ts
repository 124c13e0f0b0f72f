// The peer transport: authenticated, persistent TCP connections between Grace nodes, carrying
// Raft messages (fire and forget, in order per peer) and calls (request/response with ids).
//
// Connections. Each node dials every peer for what it sends to that peer (outbound), and serves
// what arrives on the connections peers dial to it (inbound): Raft messages go to onRaft,
// requests to the onCall handler of their method, and the answers go back on the same socket.
// So two nodes talk over two connections, one per direction of traffic, and neither side ever
// has to decide which of two simultaneous dials wins.
//
// Authentication. Nothing crosses a connection before a mutual HMAC handshake with the cluster
// secret (handshake.ts, transport.proto). After it, the acceptor knows the dialer's node id, and
// believes nothing else a peer says about itself: a Raft message whose `from` is not the
// authenticated id is dropped, and a call handler is told the authenticated id.
//
// Limits. A frame is at most maxFrameBytes (4 KiB until the handshake is done); an announced
// length past that closes the connection. Each peer has a bounded send queue: a Raft message
// that finds it full is dropped and counted (Raft retransmits), a call is refused. The queue
// holds frames until the end of the event-loop turn that sent them (they leave in one write), and
// longer only while a connection is being set up or the socket pushes back; while a peer
// is known to be down (between reconnect attempts) Raft messages drop at once, because Raft
// re-probes a peer it was told is unreachable and stale heartbeats would only be noise later.
//
// Liveness. The dialer pings every pingIntervalMs; a connection that hears nothing (and drains
// nothing) for idleTimeoutMs is closed, so a peer that vanished without a FIN is noticed in
// seconds, not after TCP's retransmission timeout. Dials back off from 50 ms to 2 s, jittered;
// a peer that dials in while its own dial waits out a backoff is dialled back at once.

import net from 'node:net'
import { LIMITS } from '../core/limits.js'
import type { Logger } from '../core/logger.js'
import { RaftCodecError, RaftFrameEncoder, decodeRaftBytes, raftFromProto } from '../cp/node/raft-codec.js'
import type { Message, NodeId } from '../cp/raft/types.js'
import { grace } from '../gen/proto.js'
import { type DecodedFrame, FrameDecoder, decodeFrame, encodeFrame, encodeRequestFrame, encodeResponseFrame, wireU64 } from './framing.js'
import {
  MIN_SECRET_BYTES,
  NONCE_BYTES,
  PROTOCOL_VERSION,
  ackMac,
  badNodeId,
  confirmMac,
  macEquals,
  newNonce,
} from './handshake.js'

export type PeerErrorCode =
  /** Unknown peer, no connection, the connection dropped before the answer, or the queue is full. */
  | 'UNREACHABLE'
  /** No answer within the call's timeout. The request may still run on the peer. */
  | 'TIMEOUT'
  /** The peer's handler failed: remoteCode and remoteMessage say how. */
  | 'REMOTE'
  /** This transport is closed. */
  | 'CLOSED'
  /** The request is over the frame limit and was not sent. */
  | 'TOO_LARGE'

/**
 * Why a call failed. UNREACHABLE after the request was written means the peer may or may not have
 * run it; a caller that must know retries with something idempotent or asks.
 */
export class PeerError extends Error {
  readonly code: PeerErrorCode
  readonly peer: NodeId
  /** REMOTE only: the code the peer's handler failed with (a docs/errors.md code for GraceErrors). */
  readonly remoteCode: string | null
  readonly remoteMessage: string | null
  /**
   * False when the request certainly never left this node (refused before it was queued), so
   * sending it again cannot make it happen twice.
   */
  readonly sent: boolean

  constructor(code: PeerErrorCode, peer: NodeId, message: string, remote?: { code: string; message: string }, sent = true) {
    super(message)
    this.name = 'PeerError'
    this.code = code
    this.peer = peer
    this.remoteCode = remote ? remote.code : null
    this.remoteMessage = remote ? remote.message : null
    this.sent = sent
  }
}

export interface PeerTransportLimits {
  maxFrameBytes: number
  maxHandshakeFrameBytes: number
  maxQueueFrames: number
  maxQueueBytes: number
  maxCallsInFlight: number
  maxServedInFlight: number
  maxPendingHandshakes: number
  handshakeTimeoutMs: number
}

export const DEFAULT_PEER_LIMITS: Readonly<PeerTransportLimits> = {
  maxFrameBytes: LIMITS.maxPeerFrameBytes,
  maxHandshakeFrameBytes: LIMITS.maxPeerHandshakeFrameBytes,
  maxQueueFrames: LIMITS.maxPeerQueueFrames,
  maxQueueBytes: LIMITS.maxPeerQueueBytes,
  maxCallsInFlight: LIMITS.maxPeerCallsInFlight,
  maxServedInFlight: LIMITS.maxPeerServedInFlight,
  maxPendingHandshakes: LIMITS.maxPeerPendingHandshakes,
  handshakeTimeoutMs: LIMITS.peerHandshakeTimeoutMs,
}

/** Peers as id -> "host:port" ("[v6]:port" for IPv6). */
export type PeerAddresses = ReadonlyMap<NodeId, string> | Readonly<Record<NodeId, string>>

export interface PeerTransportOptions {
  selfId: NodeId
  /** port 0 picks a free port; read it from `.port` after start(). */
  listen: { host: string; port: number }
  /** Every other node; an entry for selfId is ignored. */
  peers: PeerAddresses
  /** The cluster secret, at least 16 bytes. Never logged. */
  secret: string
  logger: Logger
  limits?: Partial<PeerTransportLimits>
  /**
   * Accept inbound connections from authenticated nodes that are not in `peers` (they still
   * need the secret). Off by default: a node joins by being added with setPeers first.
   */
  acceptUnknownPeers?: boolean
  /** Reconnect delays: the first, and the cap it doubles up to. Default 50 ms and 2 s. */
  backoff?: { initialMs: number; maxMs: number }
  /** Default 1000 ms. */
  pingIntervalMs?: number
  /** Default 5000 ms; must be above pingIntervalMs. */
  idleTimeoutMs?: number
}

export interface PeerStats {
  /** The outbound connection is authenticated and open. */
  connected: boolean
  queuedFrames: number
  queuedBytes: number
  /** Raft messages dropped: queue full, peer down, or over the frame limit. */
  dropped: number
  sentFrames: number
  callsInFlight: number
  /** Failed dials or lost connections since the last successful handshake. */
  failures: number
}

export type CallHandler = (from: NodeId, payload: Uint8Array) => Promise<Uint8Array>

type Timer = ReturnType<typeof setTimeout>

interface PendingCall {
  readonly id: number
  readonly resolve: (payload: Uint8Array) => void
  readonly reject: (err: PeerError) => void
  timer: Timer | null
  settled: boolean
}

interface QueuedFrame {
  readonly bytes: Buffer
  /** Set for a request: skipped if the call is already settled (timed out) when its turn comes. */
  readonly call: PendingCall | null
}

/** One TCP connection, either direction. `alive` turns false the moment we decide to drop it. */
interface Conn {
  readonly socket: net.Socket
  readonly decoder: FrameDecoder
  /** For logs: the remote address as the socket reports it. */
  readonly remote: string
  alive: boolean
  /** Why we closed it, for the log line and for rejected calls. */
  reason: string | null
  error: Error | null
  handshakeTimer: Timer | null
  lastHeard: number
}

interface OutConn extends Conn {
  readonly nonce: Buffer
  state: 'connecting' | 'handshaking' | 'ready'
  waitingDrain: boolean
}

interface InConn extends Conn {
  state: 'hello' | 'confirm' | 'ready'
  /** The id the dialer claims during the handshake; authenticated once state is 'ready'. */
  peer: NodeId | null
  dialerNonce: Uint8Array | null
  acceptorNonce: Buffer | null
  /** Counted in `handshaking` until the handshake ends one way or the other. */
  inHandshake: boolean
  served: number
  /** Reading paused until the socket drains the answers we wrote. */
  paused: boolean
  /** Answers wait in the corked socket until the end of this turn of the event loop. */
  corked: boolean
}

/** The sending side towards one peer: its connection, queue and calls. */
class Outbound {
  conn: OutConn | null = null
  /** 'backoff': the last attempt failed and the next waits on retryTimer. */
  state: 'idle' | 'active' | 'backoff' | 'removed' = 'idle'
  retryTimer: Timer | null = null
  queue: (QueuedFrame | undefined)[] = []
  head = 0
  queuedBytes = 0
  readonly pending = new Map<number, PendingCall>()
  nextCallId = 1
  failures = 0
  dropped = 0
  /** A drop streak is under way; unreachable was reported for it. */
  dropping = false
  sentFrames = 0
  flushScheduled = false
  /** Set when the peer was removed while calls to it were in flight (Transport.retire). */
  retiredBecause: string | null = null

  constructor(
    readonly peer: NodeId,
    public address: string,
    public host: string,
    public port: number,
  ) {}

  get queuedFrames(): number {
    return this.queue.length - this.head
  }

  push(item: QueuedFrame): void {
    this.queue.push(item)
    this.queuedBytes += item.bytes.length
  }

  shift(): QueuedFrame | undefined {
    if (this.head >= this.queue.length) return undefined
    const item = this.queue[this.head]!
    this.queue[this.head++] = undefined
    this.queuedBytes -= item.bytes.length
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    return item
  }

  clearQueue(): void {
    this.queue = []
    this.head = 0
    this.queuedBytes = 0
  }

  /** Drops queued Raft frames, keeps requests (their calls are settled separately); returns how many. */
  dropQueuedRaft(): number {
    let n = 0
    const kept: QueuedFrame[] = []
    for (let i = this.head; i < this.queue.length; i++) {
      const item = this.queue[i]!
      if (item.call) kept.push(item)
      else n++
    }
    this.clearQueue()
    for (const item of kept) this.push(item)
    return n
  }
}

const PING_FRAME = encodeFrame({ ping: {} }, 64)
const PONG_FRAME = encodeFrame({ pong: {} }, 64)
const MAX_ERROR_MESSAGE_CHARS = 4096
const MAX_ERROR_CODE_CHARS = 128
/** A warning of one kind is logged at most this often; the rest are counted. */
const WARN_INTERVAL_MS = 10_000

/** Parses "host:port" or "[v6]:port". Throws on anything else. */
export function parsePeerAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.%\w]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(address)
  const port = m ? Number(m[3]) : NaN
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`peer address ${JSON.stringify(address)} is not host:port`)
  return { host: (m[1] ?? m[2])!, port }
}

function normalizePeers(selfId: NodeId, peers: PeerAddresses): Map<NodeId, string> {
  const entries = peers instanceof Map ? [...peers.entries()] : Object.entries(peers as Record<string, string>)
  const out = new Map<NodeId, string>()
  for (const [id, address] of entries) {
    const bad = badNodeId(id)
    if (bad) throw new Error(`peer ${JSON.stringify(id)}: ${bad}`)
    parsePeerAddress(address)
    if (id !== selfId) out.set(id, address)
  }
  return out
}

export class PeerTransport {
  private readonly selfId: NodeId
  private readonly secret: string
  private readonly logger: Logger
  private readonly limits: PeerTransportLimits
  private readonly acceptUnknownPeers: boolean
  private readonly backoff: { initialMs: number; maxMs: number }
  private readonly pingIntervalMs: number
  private readonly idleTimeoutMs: number
  private readonly listenOn: { host: string; port: number }

  private peers: Map<NodeId, string>
  private readonly outbound = new Map<NodeId, Outbound>()
  /** Removed peers whose connection stays open until the calls already sent to them settle. */
  private readonly retiring = new Set<Outbound>()
  private readonly inbound = new Set<InConn>()
  /** The authenticated inbound connection of each peer: a newer one replaces an older one. */
  private readonly inboundByPeer = new Map<NodeId, InConn>()
  private handshaking = 0

  private raftHandler: ((m: Message) => void) | null = null
  /** Encodes an append's entries once for every follower it goes to. */
  private readonly raftFrames = new RaftFrameEncoder()
  private readonly callHandlers = new Map<string, CallHandler>()
  private readonly unreachableHandlers: ((peer: NodeId) => void)[] = []

  private server: net.Server | null = null
  private boundPort = 0
  private tick: ReturnType<typeof setInterval> | null = null
  private state: 'new' | 'starting' | 'running' | 'closed' = 'new'
  private closing: Promise<void> | null = null
  private readonly warned = new Map<string, { at: number; suppressed: number }>()
  /** Raft messages for peers not in the peer list. */
  private droppedUnknown = 0

  constructor(options: PeerTransportOptions) {
    if (typeof options.secret !== 'string' || Buffer.byteLength(options.secret) < MIN_SECRET_BYTES) {
      throw new Error(`peer transport: the cluster secret must be a string of at least ${MIN_SECRET_BYTES} bytes`)
    }
    const bad = badNodeId(options.selfId)
    if (bad) throw new Error(`peer transport: selfId: ${bad}`)
    const port = options.listen?.port
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`peer transport: listen port ${port} is not in 0..65535`)
    this.selfId = options.selfId
    this.secret = options.secret
    this.logger = options.logger
    this.limits = Object.assign({}, DEFAULT_PEER_LIMITS, options.limits)
    this.acceptUnknownPeers = options.acceptUnknownPeers === true
    this.backoff = options.backoff ?? { initialMs: 50, maxMs: 2000 }
    this.pingIntervalMs = options.pingIntervalMs ?? 1000
    this.idleTimeoutMs = options.idleTimeoutMs ?? 5000
    if (!(this.idleTimeoutMs > this.pingIntervalMs)) throw new Error('peer transport: idleTimeoutMs must be above pingIntervalMs')
    this.listenOn = { host: options.listen.host, port }
    this.peers = normalizePeers(this.selfId, options.peers)
    for (const [id, address] of this.peers) this.addOutbound(id, address)
  }

  /** The bound port, once start() has resolved. */
  get port(): number {
    return this.boundPort
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Listens, then dials every peer. Rejects if the address cannot be bound. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`peer transport: start() called when ${this.state}`)
    this.state = 'starting'
    const server = net.createServer({ noDelay: true })
    server.on('connection', (socket) => this.accept(socket))
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(this.listenOn.port, this.listenOn.host, () => {
          server.off('error', reject)
          resolve()
        })
      })
    } catch (err) {
      this.state = 'closed'
      server.close()
      throw err
    }
    server.on('error', (err) => this.logger.error({ err: err.message }, 'peer transport: server error'))
    this.server = server
    this.boundPort = (server.address() as net.AddressInfo).port
    if (this.state !== 'starting') {
      // close() was called while we were binding.
      server.close()
      return
    }
    this.state = 'running'
    this.tick = setInterval(() => this.onTick(), this.pingIntervalMs)
    this.tick.unref()
    for (const o of this.outbound.values()) this.connect(o)
  }

  /** Closes the server and every connection, rejects every pending call with CLOSED. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing
    this.state = 'closed'
    if (this.tick) clearInterval(this.tick)
    this.tick = null
    for (const o of [...this.outbound.values(), ...this.retiring]) this.shutOutbound(o, 'CLOSED', 'peer transport closed')
    this.retiring.clear()
    for (const c of this.inbound) this.drop(c, null)
    const server = this.server
    this.closing = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve()
    return this.closing
  }

  /**
   * Replaces the peer list. New peers are dialed, removed ones take no new traffic and are
   * disconnected once the calls already sent to them settle (retire; unless acceptUnknownPeers,
   * their inbound connection is closed at once), and a peer whose address changed is redialed at
   * the new one with its queue kept.
   */
  setPeers(peers: PeerAddresses): void {
    const next = normalizePeers(this.selfId, peers)
    if (this.state === 'closed') return
    for (const [id, o] of this.outbound) {
      if (next.has(id)) continue
      this.retire(o, `${id} was removed from the peers`)
      this.outbound.delete(id)
      if (!this.acceptUnknownPeers) {
        const c = this.inboundByPeer.get(id)
        if (c) this.drop(c, `${id} was removed from the peers`)
      }
    }
    this.peers = next
    for (const [id, address] of next) {
      const o = this.outbound.get(id)
      if (!o) {
        const added = this.addOutbound(id, address)
        if (this.state === 'running') this.connect(added)
      } else if (o.address !== address) {
        const { host, port } = parsePeerAddress(address)
        o.address = address
        o.host = host
        o.port = port
        this.logger.info({ peer: id, address }, 'peer transport: peer address changed, redialing')
        if (o.conn) this.drop(o.conn, 'peer address changed')
        else if (o.state === 'backoff' && this.state === 'running') {
          if (o.retryTimer) clearTimeout(o.retryTimer)
          o.retryTimer = null
          this.connect(o)
        }
      }
    }
  }

  // ---- handlers ----------------------------------------------------------------------------

  /** The one receiver of Raft messages; a later call replaces it. Must not block. */
  onRaft(handler: (m: Message) => void): void {
    this.raftHandler = handler
  }

  /** Serves calls of `method`. One handler per method: registering a second throws. */
  onCall(method: string, handler: CallHandler): void {
    if (this.callHandlers.has(method)) throw new Error(`peer transport: method ${method} already has a handler`)
    this.callHandlers.set(method, handler)
  }

  /** Told when a dial fails, a connection drops, or a Raft message to the peer is dropped. */
  onUnreachable(handler: (peer: NodeId) => void): void {
    this.unreachableHandlers.push(handler)
  }

  /** True when the outbound connection to peer is authenticated and open. */
  isConnected(peer: NodeId): boolean {
    return this.outbound.get(peer)?.conn?.state === 'ready'
  }

  stats(): Record<NodeId, PeerStats> {
    const out: Record<NodeId, PeerStats> = {}
    for (const [id, o] of this.outbound) {
      out[id] = {
        connected: o.conn?.state === 'ready',
        queuedFrames: o.queuedFrames,
        queuedBytes: o.queuedBytes,
        dropped: o.dropped,
        sentFrames: o.sentFrames,
        callsInFlight: o.pending.size,
        failures: o.failures,
      }
    }
    return out
  }

  // ---- sending -----------------------------------------------------------------------------

  /** Queues m for `to`. Never throws: a message that cannot be sent is dropped and counted. */
  sendRaft(to: NodeId, m: Message): void {
    if (this.state === 'closed') return
    const o = this.outbound.get(to)
    if (!o) {
      this.droppedUnknown++
      this.warnLimited('raft-unknown-peer', { peer: to, dropped: this.droppedUnknown }, 'peer transport: raft message for a node that is not a peer, dropped')
      return
    }
    if (o.state === 'backoff') {
      o.dropped++
      return
    }
    let bytes: Buffer
    try {
      bytes = this.raftFrames.encode(m, this.limits.maxFrameBytes)
    } catch (err) {
      o.dropped++
      this.logger.error({ peer: to, type: m.type, err: (err as Error).message }, 'peer transport: cannot send raft message, dropped')
      return
    }
    if (o.queuedFrames >= this.limits.maxQueueFrames || o.queuedBytes + bytes.length > this.limits.maxQueueBytes) {
      o.dropped++
      if (!o.dropping) {
        o.dropping = true
        this.warnLimited('raft-queue-full', { peer: to, queuedFrames: o.queuedFrames, queuedBytes: o.queuedBytes }, 'peer transport: send queue full, dropping raft messages')
        this.reportUnreachable(to)
      }
      return
    }
    o.dropping = false
    o.push({ bytes, call: null })
    this.scheduleFlush(o)
  }

  /**
   * Calls `method` on peer `to` and resolves with its answer. Rejects with PeerError: CLOSED,
   * UNREACHABLE (unknown peer, known to be down, queue full, too many calls in flight, or the
   * connection dropped before the answer), TIMEOUT, REMOTE (the handler failed; remoteCode says
   * how), TOO_LARGE. The answer may share memory with the receive buffer.
   */
  call(to: NodeId, method: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      if (this.state === 'closed') return reject(new PeerError('CLOSED', to, 'peer transport closed', undefined, false))
      const o = this.outbound.get(to)
      if (!o) return reject(new PeerError('UNREACHABLE', to, `${to} is not a peer`, undefined, false))
      if (o.state === 'backoff' || this.state !== 'running') {
        return reject(new PeerError('UNREACHABLE', to, `not connected to ${to}`, undefined, false))
      }
      if (o.pending.size >= this.limits.maxCallsInFlight) {
        return reject(new PeerError('UNREACHABLE', to, `${o.pending.size} calls to ${to} already in flight`, undefined, false))
      }
      const id = o.nextCallId++
      let bytes: Buffer
      try {
        bytes = encodeRequestFrame(id, method, payload, this.limits.maxFrameBytes)
      } catch (err) {
        return reject(new PeerError('TOO_LARGE', to, (err as Error).message))
      }
      if (o.queuedFrames >= this.limits.maxQueueFrames || o.queuedBytes + bytes.length > this.limits.maxQueueBytes) {
        return reject(new PeerError('UNREACHABLE', to, `send queue to ${to} is full`, undefined, false))
      }
      const call: PendingCall = { id, resolve, reject, timer: null, settled: false }
      call.timer = setTimeout(() => {
        call.timer = null
        this.settle(o, call, new PeerError('TIMEOUT', to, `${method} on ${to}: no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      call.timer.unref()
      o.pending.set(id, call)
      o.push({ bytes, call })
      this.scheduleFlush(o)
    })
  }

  private settle(o: Outbound, call: PendingCall, result: PeerError | Uint8Array): void {
    if (call.settled) return
    call.settled = true
    if (call.timer) clearTimeout(call.timer)
    call.timer = null
    o.pending.delete(call.id)
    if (o.pending.size === 0 && this.retiring.delete(o)) {
      if (o.conn) this.drop(o.conn, o.retiredBecause)
      o.conn = null
    }
    if (result instanceof PeerError) call.reject(result)
    else call.resolve(result)
  }

  private scheduleFlush(o: Outbound): void {
    if (o.flushScheduled) return
    o.flushScheduled = true
    // Everything sent in the same turn of the event loop goes out in one write: a Raft Ready's
    // messages, and the calls made by the callbacks of one poll (under load, a forwarded request
    // per HTTP request read), which a microtask would flush one callback at a time.
    setImmediate(() => {
      o.flushScheduled = false
      this.flush(o)
    })
  }

  /**
   * Writes what is queued for every peer now rather than at the end of this turn of the event
   * loop. The Raft driver calls it once a Ready's messages are all handed over (one frame per
   * peer, mostly), so that they leave before the driver's own LevelDB write wakes a thread pool
   * thread to compete with the peers for the core, and a follower's acknowledgement leaves
   * before it applies what the leader committed.
   */
  flushRaft(): void {
    for (const o of this.outbound.values()) if (o.queuedFrames > 0) this.flush(o)
  }

  /** Writes queued frames until the queue is empty or the socket pushes back. */
  private flush(o: Outbound): void {
    const c = o.conn
    if (!c || !c.alive || c.state !== 'ready' || c.waitingDrain) return
    const socket = c.socket
    socket.cork()
    try {
      for (;;) {
        const item = o.shift()
        if (!item) break
        if (item.call?.settled) continue
        o.sentFrames++
        if (!socket.write(item.bytes)) {
          c.waitingDrain = true
          break
        }
      }
    } finally {
      socket.uncork()
    }
  }

  // ---- outbound connections ----------------------------------------------------------------

  private addOutbound(id: NodeId, address: string): Outbound {
    const { host, port } = parsePeerAddress(address)
    const o = new Outbound(id, address, host, port)
    this.outbound.set(id, o)
    return o
  }

  private connect(o: Outbound): void {
    if (this.state !== 'running' || o.state === 'removed') return
    o.state = 'active'
    const socket = net.connect({ host: o.host, port: o.port, noDelay: true })
    const c: OutConn = {
      socket,
      decoder: new FrameDecoder(this.limits.maxHandshakeFrameBytes),
      remote: o.address,
      alive: true,
      reason: null,
      error: null,
      handshakeTimer: null,
      lastHeard: Date.now(),
      nonce: newNonce(),
      state: 'connecting',
      waitingDrain: false,
    }
    o.conn = c
    socket.setKeepAlive(true, this.idleTimeoutMs)
    // Covers the TCP connect too: a SYN into a black hole is given up on as quickly.
    c.handshakeTimer = setTimeout(() => {
      c.handshakeTimer = null
      this.drop(c, `no handshake within ${this.limits.handshakeTimeoutMs} ms`)
    }, this.limits.handshakeTimeoutMs)
    c.handshakeTimer.unref()
    socket.on('connect', () => {
      if (!c.alive) return
      c.state = 'handshaking'
      socket.write(encodeFrame({ hello: { version: PROTOCOL_VERSION, nodeId: this.selfId, targetId: o.peer, nonce: c.nonce } }, this.limits.maxHandshakeFrameBytes))
    })
    socket.on('data', (chunk: Buffer) => this.outboundData(o, c, chunk))
    socket.on('drain', () => {
      c.lastHeard = Date.now()
      c.waitingDrain = false
      this.flush(o)
    })
    socket.on('error', (err) => {
      c.error = err
    })
    socket.on('close', () => this.outboundClosed(o, c))
  }

  private outboundData(o: Outbound, c: OutConn, chunk: Buffer): void {
    if (!c.alive) return
    c.lastHeard = Date.now()
    try {
      c.decoder.push(chunk, (body) => {
        this.outboundFrame(o, c, decodeFrame(body))
        return c.alive
      })
    } catch (err) {
      // FramingError: an oversized length or a body that is not a Frame.
      this.drop(c, `protocol error: ${(err as Error).message}`)
    }
  }

  private outboundFrame(o: Outbound, c: OutConn, f: DecodedFrame): void {
    if (c.state !== 'ready') return this.outboundHandshake(o, c, f)
    switch (f.kind) {
      case 'response': {
        const r = f.response!
        const id = wireU64(r.id)
        const call = id === null ? undefined : o.pending.get(id)
        if (!call) return // timed out already
        if (r.errorCode) {
          const message = r.errorMessage || r.errorCode
          this.settle(o, call, new PeerError('REMOTE', o.peer, `${o.peer}: ${r.errorCode}: ${message}`, { code: r.errorCode, message }))
        } else {
          this.settle(o, call, r.payload ?? new Uint8Array(0))
        }
        return
      }
      case 'pong':
        return
      case undefined:
        return // a frame kind from a newer version: not ours to answer
      default:
        return this.drop(c, `protocol error: unexpected ${f.kind} frame on an outbound connection`)
    }
  }

  private outboundHandshake(o: Outbound, c: OutConn, f: DecodedFrame): void {
    if (c.state !== 'handshaking') return this.drop(c, 'protocol error: frame before connect')
    if (f.kind === 'helloReject') return this.drop(c, `${o.peer} refused the handshake: ${f.helloReject!.reason || 'no reason given'}`)
    if (f.kind !== 'helloAck') return this.drop(c, `protocol error: expected HelloAck, got ${f.kind ?? 'an unknown frame'}`)
    const ack = f.helloAck!
    if (ack.nodeId !== o.peer) {
      return this.reject(c, 'wrong node', `${o.address} answered as node ${JSON.stringify(ack.nodeId)}, not ${o.peer}`)
    }
    if (!ack.nonce || ack.nonce.length !== NONCE_BYTES) return this.reject(c, 'bad nonce', 'HelloAck nonce is not 32 bytes')
    const fields = { dialerId: this.selfId, acceptorId: o.peer, dialerNonce: c.nonce, acceptorNonce: ack.nonce }
    if (!macEquals(ackMac(this.secret, fields), ack.mac)) {
      this.warnLimited(
        `outbound-auth:${o.peer}`,
        { peer: o.peer, address: o.address },
        'peer transport: handshake failed: the peer does not know the cluster secret (its HelloAck MAC is wrong; do the secrets differ?)',
      )
      return this.reject(c, 'authentication failed', 'authentication failed: wrong HelloAck MAC')
    }
    c.socket.write(encodeFrame({ helloConfirm: { mac: confirmMac(this.secret, fields) } }, this.limits.maxHandshakeFrameBytes))
    if (c.handshakeTimer) clearTimeout(c.handshakeTimer)
    c.handshakeTimer = null
    c.state = 'ready'
    c.decoder.setMaxFrameBytes(this.limits.maxFrameBytes)
    if (o.failures > 0) this.logger.info({ peer: o.peer, address: o.address, after: o.failures }, 'peer transport: connected to peer')
    else this.logger.info({ peer: o.peer, address: o.address }, 'peer transport: connected to peer')
    o.failures = 0
    this.flush(o)
  }

  private outboundClosed(o: Outbound, c: OutConn): void {
    if (c.handshakeTimer) clearTimeout(c.handshakeTimer)
    c.handshakeTimer = null
    c.alive = false
    if (o.conn !== c) return
    o.conn = null
    if (o.state === 'removed') {
      // A retiring peer's connection went before its calls were answered.
      this.retiring.delete(o)
      for (const call of [...o.pending.values()]) this.settle(o, call, new PeerError('UNREACHABLE', o.peer, `connection to ${o.peer} lost after it was removed from the peers`))
      return
    }
    if (this.state === 'closed') return
    const wasReady = c.state === 'ready'
    const reason = c.reason ?? (c.error ? c.error.message : 'connection closed by peer')
    for (const call of [...o.pending.values()]) {
      this.settle(o, call, new PeerError('UNREACHABLE', o.peer, `connection to ${o.peer} lost: ${reason}`))
    }
    const dropped = o.dropQueuedRaft()
    o.dropped += dropped
    o.failures++
    // One line when a peer goes away, then one a minute or so while it stays away.
    if (wasReady || o.failures === 1 || o.failures % 30 === 0) {
      this.logger.warn(
        { peer: o.peer, address: o.address, reason, failures: o.failures, dropped },
        wasReady ? 'peer transport: lost connection to peer' : 'peer transport: cannot connect to peer',
      )
    }
    const cap = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(o.failures - 1, 30))
    const delay = Math.round(cap / 2 + (Math.random() * cap) / 2)
    o.state = 'backoff'
    o.retryTimer = setTimeout(() => {
      o.retryTimer = null
      this.connect(o)
    }, delay)
    o.retryTimer.unref()
    this.reportUnreachable(o.peer)
  }

  /**
   * A peer removed from the peers: nothing new is sent to it, but calls already sent keep its
   * connection until they are answered or time out (settle closes it after the last). The removed
   * node may be the leader answering the very call that removed it: a follower that forwarded
   * the removal applies the new configuration, and drops the leader from its peers, before the
   * leader's answer is back.
   */
  private retire(o: Outbound, why: string): void {
    if (o.pending.size === 0 || o.conn?.state !== 'ready') return this.shutOutbound(o, 'UNREACHABLE', why)
    o.state = 'removed'
    o.retiredBecause = why
    o.dropQueuedRaft()
    this.retiring.add(o)
  }

  /** Stops all traffic to a peer for good (removed, or the transport closed). */
  private shutOutbound(o: Outbound, code: 'CLOSED' | 'UNREACHABLE', why: string): void {
    o.state = 'removed'
    if (o.retryTimer) clearTimeout(o.retryTimer)
    o.retryTimer = null
    for (const call of [...o.pending.values()]) this.settle(o, call, new PeerError(code, o.peer, why))
    o.clearQueue()
    if (o.conn) this.drop(o.conn, why)
    o.conn = null
  }

  /** Deferred: never re-enters the caller of sendRaft (the Raft driver, in the middle of a Ready). */
  private reportUnreachable(peer: NodeId): void {
    queueMicrotask(() => {
      if (this.state === 'closed') return
      for (const handler of this.unreachableHandlers) {
        try {
          handler(peer)
        } catch (err) {
          this.logger.error({ peer, err: (err as Error).message }, 'peer transport: onUnreachable handler threw')
        }
      }
    })
  }

  // ---- inbound connections -----------------------------------------------------------------

  private accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`
    if (this.state !== 'running') {
      socket.destroy()
      return
    }
    if (this.handshaking >= this.limits.maxPendingHandshakes) {
      this.warnLimited('too-many-handshakes', { remote, handshaking: this.handshaking }, 'peer transport: too many connections in the handshake, refused one')
      socket.destroy()
      return
    }
    this.handshaking++
    socket.setNoDelay(true)
    socket.setKeepAlive(true, this.idleTimeoutMs)
    const c: InConn = {
      socket,
      decoder: new FrameDecoder(this.limits.maxHandshakeFrameBytes),
      remote,
      alive: true,
      reason: null,
      error: null,
      handshakeTimer: null,
      lastHeard: Date.now(),
      state: 'hello',
      peer: null,
      dialerNonce: null,
      acceptorNonce: null,
      inHandshake: true,
      served: 0,
      paused: false,
      corked: false,
    }
    this.inbound.add(c)
    c.handshakeTimer = setTimeout(() => {
      c.handshakeTimer = null
      if (c.alive) this.warnLimited('handshake-timeout', { remote }, `peer transport: no handshake within ${this.limits.handshakeTimeoutMs} ms, closing`)
      this.drop(c, 'handshake timeout')
    }, this.limits.handshakeTimeoutMs)
    c.handshakeTimer.unref()
    socket.on('data', (chunk: Buffer) => this.inboundData(c, chunk))
    socket.on('drain', () => {
      if (c.paused && c.alive) {
        c.paused = false
        c.lastHeard = Date.now()
        socket.resume()
      }
    })
    socket.on('error', (err) => {
      c.error = err
    })
    socket.on('close', () => this.inboundClosed(c))
  }

  private inboundData(c: InConn, chunk: Buffer): void {
    if (!c.alive) return
    c.lastHeard = Date.now()
    try {
      c.decoder.push(chunk, (body) => {
        this.inboundFrame(c, decodeFrame(body))
        return c.alive
      })
    } catch (err) {
      // FramingError: an oversized length or a body that is not a Frame.
      this.inboundProtocolError(c, (err as Error).message)
    }
  }

  private inboundFrame(c: InConn, f: DecodedFrame): void {
    if (c.state !== 'ready') return this.inboundHandshake(c, f)
    switch (f.kind) {
      case 'raft':
        return this.receiveRaft(c, f)
      case 'request':
        return this.serve(c, f.request!)
      case 'ping':
        return this.answer(c, PONG_FRAME)
      case undefined:
        return // a frame kind from a newer version
      default:
        return this.inboundProtocolError(c, `unexpected ${f.kind} frame on an inbound connection`)
    }
  }

  private inboundProtocolError(c: InConn, message: string): void {
    this.warnLimited('inbound-protocol-error', { remote: c.remote, peer: c.state === 'ready' ? c.peer : undefined, reason: message }, 'peer transport: protocol error, closing connection')
    this.drop(c, `protocol error: ${message}`)
  }

  private inboundHandshake(c: InConn, f: DecodedFrame): void {
    if (c.state === 'hello') {
      if (f.kind !== 'hello') return this.inboundProtocolError(c, `expected Hello, got ${f.kind ?? 'an unknown frame'}`)
      const hello = f.hello!
      const claimed = hello.nodeId ?? ''
      const refuse = (reason: string, detail: string): void => {
        this.warnLimited(`handshake-refused:${reason}`, { remote: c.remote, claimedId: claimed, reason: detail }, 'peer transport: refused a connection')
        this.reject(c, reason, detail)
      }
      if (hello.version !== PROTOCOL_VERSION) return refuse('unsupported protocol version', `protocol version ${hello.version}, this node speaks ${PROTOCOL_VERSION}`)
      const bad = badNodeId(claimed)
      if (bad) return refuse('bad node id', bad)
      if (hello.targetId !== this.selfId) return refuse('wrong node', `dialed node ${JSON.stringify(hello.targetId)}, this is ${this.selfId}`)
      if (claimed === this.selfId) return refuse('same node id', `the dialer claims this node's own id ${this.selfId}`)
      if (!this.acceptUnknownPeers && !this.peers.has(claimed)) return refuse('unknown node id', `${claimed} is not a peer of ${this.selfId}`)
      if (!hello.nonce || hello.nonce.length !== NONCE_BYTES) return refuse('bad nonce', 'Hello nonce is not 32 bytes')
      c.peer = claimed
      c.dialerNonce = Buffer.from(hello.nonce)
      c.acceptorNonce = newNonce()
      const mac = ackMac(this.secret, { dialerId: claimed, acceptorId: this.selfId, dialerNonce: c.dialerNonce, acceptorNonce: c.acceptorNonce })
      c.state = 'confirm'
      this.answer(c, encodeFrame({ helloAck: { nodeId: this.selfId, nonce: c.acceptorNonce, mac } }, this.limits.maxHandshakeFrameBytes))
      return
    }
    // state 'confirm'
    if (f.kind === 'helloReject') {
      const reason = f.helloReject!.reason
      this.warnLimited(
        `handshake-rejected-by-dialer:${reason === 'authentication failed' ? 'auth' : 'other'}`,
        { remote: c.remote, claimedId: c.peer, reason },
        reason === 'authentication failed'
          ? 'peer transport: handshake failed: the dialer refused our HelloAck MAC (do the cluster secrets differ?)'
          : 'peer transport: the dialer refused the handshake',
      )
      return this.drop(c, 'dialer refused the handshake')
    }
    if (f.kind !== 'helloConfirm') return this.inboundProtocolError(c, `expected HelloConfirm, got ${f.kind ?? 'an unknown frame'}`)
    const expected = confirmMac(this.secret, { dialerId: c.peer!, acceptorId: this.selfId, dialerNonce: c.dialerNonce!, acceptorNonce: c.acceptorNonce! })
    if (!macEquals(expected, f.helloConfirm!.mac)) {
      this.warnLimited(
        'handshake-bad-mac',
        { remote: c.remote, claimedId: c.peer },
        'peer transport: handshake failed: the dialer does not know the cluster secret (HelloConfirm MAC is wrong)',
      )
      return this.reject(c, 'authentication failed', 'bad HelloConfirm MAC')
    }
    if (c.handshakeTimer) clearTimeout(c.handshakeTimer)
    c.handshakeTimer = null
    this.handshaking--
    c.inHandshake = false
    c.state = 'ready'
    c.decoder.setMaxFrameBytes(this.limits.maxFrameBytes)
    const peer = c.peer!
    // A node that redials (it restarted, or saw its connection die) supersedes its old connection.
    const old = this.inboundByPeer.get(peer)
    if (old && old !== c) {
      this.logger.info({ peer, remote: old.remote }, 'peer transport: a newer connection from the peer replaces the old one')
      this.drop(old, 'superseded by a newer connection from the same peer')
    }
    this.inboundByPeer.set(peer, c)
    this.logger.info({ peer, remote: c.remote }, 'peer transport: peer connected')
    // The peer just proved it is up (it restarted, say): if our own connection to it is waiting
    // out a backoff, dial now rather than up to backoff.maxMs later, so that Raft messages and
    // calls reach it, and it is UP in the member table, as soon as it is back.
    const o = this.outbound.get(peer)
    if (o && o.state === 'backoff' && this.state === 'running') {
      if (o.retryTimer) clearTimeout(o.retryTimer)
      o.retryTimer = null
      this.connect(o)
    }
  }

  private receiveRaft(c: InConn, f: DecodedFrame): void {
    let m: Message
    try {
      m = f.raftBytes ? decodeRaftBytes(f.raftBytes) : raftFromProto(f.raft!)
    } catch (err) {
      const reason = err instanceof RaftCodecError ? err.message : String(err)
      this.warnLimited('raft-invalid', { peer: c.peer, reason }, 'peer transport: invalid raft message, dropped')
      return
    }
    if (m.from !== c.peer || m.to !== this.selfId) {
      this.warnLimited('raft-misaddressed', { peer: c.peer, from: m.from, to: m.to }, 'peer transport: raft message with a from or to that does not match the connection, dropped')
      return
    }
    const handler = this.raftHandler
    if (!handler) return
    try {
      handler(m)
    } catch (err) {
      this.logger.error({ peer: c.peer, type: m.type, err: (err as Error).message }, 'peer transport: onRaft handler threw')
    }
  }

  private serve(c: InConn, req: grace.peer.Request.$Properties): void {
    const id = wireU64(req.id)
    if (id === null) return this.inboundProtocolError(c, 'request id above 2^53 - 1')
    if (c.served >= this.limits.maxServedInFlight) {
      return this.respond(c, id, 'UNAVAILABLE', `${c.served} calls from ${c.peer} already in flight`, null)
    }
    const method = req.method ?? ''
    const handler = this.callHandlers.get(method)
    if (!handler) return this.respond(c, id, 'NOT_FOUND', `no handler for peer method ${JSON.stringify(method)}`, null)
    const from = c.peer!
    const payload = req.payload ?? new Uint8Array(0)
    c.served++
    let result: Promise<Uint8Array>
    try {
      result = Promise.resolve(handler(from, payload))
    } catch (err) {
      result = Promise.reject(err)
    }
    result.then(
      (answer) => {
        c.served--
        if (!(answer instanceof Uint8Array)) {
          this.logger.error({ peer: from, method }, 'peer transport: call handler resolved with something other than bytes')
          return this.respond(c, id, 'INTERNAL', `handler for ${method} did not answer bytes`, null)
        }
        this.respond(c, id, '', '', answer)
      },
      (err: unknown) => {
        c.served--
        const e = err as { code?: unknown; message?: unknown } | null
        const code = e && typeof e.code === 'string' && e.code ? e.code.slice(0, MAX_ERROR_CODE_CHARS) : 'INTERNAL'
        const message = e && typeof e.message === 'string' ? e.message : String(err)
        if (code === 'INTERNAL') this.logger.error({ peer: from, method, err: message }, 'peer transport: call handler failed')
        this.respond(c, id, code, message, null)
      },
    )
  }

  private respond(c: InConn, id: number, errorCode: string, errorMessage: string, payload: Uint8Array | null): void {
    if (!c.alive) return
    let bytes: Buffer
    try {
      bytes = encodeResponseFrame(id, errorCode, errorMessage.slice(0, MAX_ERROR_MESSAGE_CHARS), payload, this.limits.maxFrameBytes)
    } catch (err) {
      bytes = encodeResponseFrame(id, 'INTERNAL', `answer not sent: ${(err as Error).message}`, null, this.limits.maxFrameBytes)
    }
    this.answer(c, bytes)
  }

  /**
   * Writes on an inbound connection; when the socket pushes back, stop reading until it drains.
   * The answers of one turn of the event loop leave in one write (corked until setImmediate):
   * under load a peer's calls arrive many to a read, and a write per answer cost a syscall and a
   * wakeup of the peer each.
   */
  private answer(c: InConn, bytes: Buffer): void {
    if (!c.alive) return
    if (!c.corked) {
      c.corked = true
      c.socket.cork()
      setImmediate(() => {
        c.corked = false
        c.socket.uncork()
      })
    }
    if (!c.socket.write(bytes) && !c.paused) {
      c.paused = true
      c.socket.pause()
    }
  }

  private inboundClosed(c: InConn): void {
    if (c.handshakeTimer) clearTimeout(c.handshakeTimer)
    c.handshakeTimer = null
    if (c.inHandshake) this.handshaking--
    c.inHandshake = false
    c.alive = false
    this.inbound.delete(c)
    if (c.peer !== null && this.inboundByPeer.get(c.peer) === c) this.inboundByPeer.delete(c.peer)
  }

  // ---- both directions ---------------------------------------------------------------------

  /** Sends HelloReject with a reason, then closes. The reason says nothing about the secret. */
  private reject(c: Conn, reason: string, detail: string): void {
    if (!c.alive) return
    c.alive = false
    c.reason = detail
    const socket = c.socket
    // The handshake timer stays armed: if the reject never drains, it destroys the socket.
    socket.end(encodeFrame({ helloReject: { reason } }, this.limits.maxHandshakeFrameBytes), () => socket.destroy())
  }

  /** Closes a connection now; its 'close' event does the bookkeeping. */
  private drop(c: Conn, reason: string | null): void {
    if (c.handshakeTimer) clearTimeout(c.handshakeTimer)
    c.handshakeTimer = null
    if (c.alive) {
      c.alive = false
      c.reason = reason
    }
    c.socket.destroy()
  }

  private onTick(): void {
    const now = Date.now()
    for (const o of this.outbound.values()) {
      const c = o.conn
      if (!c || c.state !== 'ready') continue
      if (now - c.lastHeard > this.idleTimeoutMs) this.drop(c, `nothing heard for ${now - c.lastHeard} ms`)
      else if (c.alive) c.socket.write(PING_FRAME)
    }
    for (const c of this.inbound) {
      if (c.alive && c.state === 'ready' && !c.paused && now - c.lastHeard > this.idleTimeoutMs) {
        this.drop(c, `nothing heard from ${c.peer} for ${now - c.lastHeard} ms`)
      }
    }
  }

  private warnLimited(key: string, obj: Record<string, unknown>, msg: string): void {
    const now = Date.now()
    const w = this.warned.get(key)
    if (w && now - w.at < WARN_INTERVAL_MS) {
      w.suppressed++
      return
    }
    const suppressed = w ? w.suppressed : 0
    this.warned.set(key, { at: now, suppressed: 0 })
    this.logger.warn(suppressed > 0 ? Object.assign({ suppressed }, obj) : obj, msg)
  }
}
