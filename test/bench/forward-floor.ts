// The forwarding floor of bench:ap: the least a request costs on the benchmark's layout when it
// must be answered by its client's owner among three processes, as issue 4 requires of Grace's
// ephemeral writes. Three processes, as the cluster: each takes the same HTTP requests as a
// Grace node (the same fastify, the same V8 settings, JSON parsed, a constant answer), picks the
// client's owner by a hash of its id, and answers at once if it owns the client; otherwise it
// sends the client id to the owner over TCP and answers when the owner acknowledges. Nothing
// else: no store, no leases, no sync to peers, no validation, no request log. A real system can
// only be slower than this.
//
//   node forward-floor.js --port P --peer-port Q --index I --peers HOST:Q0,HOST:Q1,HOST:Q2

import { type Socket, connect, createServer } from 'node:net'
import { parseArgs } from 'node:util'
import { tuneV8ForServer } from '../../src/v8-tuning.js'
import { frameOf, onAcks, onFrames } from './floor-frames.js'

// As the roof: the same V8 settings as Grace, set before fastify loads.
tuneV8ForServer()
const { default: Fastify } = await import('fastify')

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    'peer-port': { type: 'string' },
    index: { type: 'string' },
    peers: { type: 'string' },
  },
})
const HOST = '127.0.0.1'
/** The largest frame accepted from a peer: a client id is at most a few hundred bytes. */
const MAX_FRAME_BYTES = 4096
const JSON_TYPE = 'application/json; charset=utf-8'
const REGISTERED = '{"ok":true}'
const BEAT = '{"clientBeatInterval":5000,"registered":true}'

const self = Number(opts.index)
const peerAddresses = (opts.peers ?? '').split(',')
if (!(self >= 0 && self < peerAddresses.length)) {
  process.stderr.write('forward-floor: --index must name one of --peers\n')
  process.exit(2)
}

/** The owner of a client among the peers: FNV-1a of its id, modulo their number. */
function ownerOf(clientId: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < clientId.length; i++) h = Math.imul(h ^ clientId.charCodeAt(i), 0x01000193)
  return (h >>> 0) % peerAddresses.length
}

// A peer's frame (floor-frames.ts) carries a client id; owning it is all there is to do.
createServer((socket) => {
  socket.setNoDelay(true)
  onFrames(socket, MAX_FRAME_BYTES, (frame) => socket.write(frame.subarray(0, 4)))
  socket.on('error', () => {})
}).listen(Number(opts['peer-port']), HOST)

const waiting = new Map<number, () => void>()
let nextId = 1
/** Connections to the other peers, opened on first use (they may still be starting). */
const links = new Map<number, Promise<Socket>>()

function linkTo(index: number): Promise<Socket> {
  let link = links.get(index)
  if (!link) {
    const [host, port] = peerAddresses[index].split(':')
    link = new Promise<Socket>((resolve, reject) => {
      const socket = connect(Number(port), host, () => resolve(socket))
      socket.once('error', reject)
    }).then((socket) => {
      socket.setNoDelay(true)
      onAcks(socket, (id) => waiting.get(id)?.())
      socket.on('close', () => links.delete(index))
      return socket
    })
    link.catch(() => links.delete(index))
    links.set(index, link)
  }
  return link
}

/** Answers at once when this process owns the client, else once its owner acknowledged it. */
async function forward(clientId: string): Promise<void> {
  const owner = ownerOf(clientId)
  if (owner === self) return
  const socket = await linkTo(owner)
  const id = nextId++ >>> 0
  const frame = frameOf(id, Buffer.from(clientId))
  await new Promise<void>((resolve) => {
    waiting.set(id, () => {
      waiting.delete(id)
      resolve()
    })
    socket.write(frame)
  })
}

const app = Fastify({ logger: false })
app.get('/readyz', async () => ({ status: 'READY' }))
app.post('/v1/ns/instances', async (request, reply) => {
  const body = request.body as { ip?: string; port?: number; clientId?: string }
  await forward(body.clientId ?? `${body.ip}:${body.port}`)
  return reply.type(JSON_TYPE).send(REGISTERED)
})
app.put('/v1/ns/instances/beat', async (request, reply) => {
  await forward(String((request.body as { clientId?: string }).clientId))
  return reply.type(JSON_TYPE).send(BEAT)
})
await app.listen({ host: HOST, port: Number(opts.port) })
