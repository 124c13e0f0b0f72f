// The replication floor of bench:cp: the least a replicated, fsynced write can cost on the
// benchmark's layout, for comparing with the 1-connection latency target. Three processes, as the
// clusters: a leader that takes the same HTTP request as Grace (the same fastify, the same V8
// settings, JSON parsed, a constant answer) and two followers. Per write the leader appends the
// body to its own file and sends it to both followers over TCP; each follower appends it to its
// file and answers; the leader answers the client once two of the three copies (its own
// included) are durable. Each append is one write to a file opened with O_DSYNC (one libuv pool
// task, as one synced LevelDB batch is). Nothing else: no log index, no terms, no state machine, no storage
// engine, no validation, no request log. A real system can only be slower than this.
//
//   node replication-floor.js --role follower --port P --peer-port Q --file F
//   node replication-floor.js --role leader --port P --file F --followers HOST:Q,HOST:Q

import { constants, open } from 'node:fs/promises'
import { type Socket, connect, createServer } from 'node:net'
import { parseArgs } from 'node:util'
import { tuneV8ForServer } from '../../src/v8-tuning.js'
import { frameOf, onAcks, onFrames } from './floor-frames.js'

// As the roof: the same V8 settings as Grace, set before fastify loads.
tuneV8ForServer()
const { default: Fastify } = await import('fastify')

const { values: opts } = parseArgs({
  options: {
    role: { type: 'string' },
    port: { type: 'string' },
    'peer-port': { type: 'string' },
    file: { type: 'string' },
    followers: { type: 'string' },
  },
})
const HOST = '127.0.0.1'
/** The largest frame a follower accepts: a registration body is about 70 bytes. */
const MAX_FRAME_BYTES = 64 * 1024
const JSON_TYPE = 'application/json; charset=utf-8'

const file = await open(opts.file ?? fail('--file is required'), constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC)
/** Appends bytes durably: O_DSYNC makes the write return once the data is on disk. */
const append = async (bytes: Uint8Array): Promise<void> => {
  await file.write(bytes)
}

if (opts.role === 'follower') await follower()
else if (opts.role === 'leader') await leader()
else fail('--role must be leader or follower')

function fail(message: string): never {
  process.stderr.write(`replication-floor: ${message}\n`)
  process.exit(2)
}

/** Appends each frame (floor-frames.ts) and acknowledges it once it is durable. */
async function follower(): Promise<void> {
  createServer((socket) => {
    socket.setNoDelay(true)
    onFrames(socket, MAX_FRAME_BYTES, (frame) => {
      const ack = Buffer.from(frame.subarray(0, 4))
      append(frame).then(
        () => socket.write(ack),
        (err: Error) => socket.destroy(err),
      )
    })
    socket.on('error', () => {})
  }).listen(Number(opts['peer-port']), HOST)
  const app = Fastify({ logger: false })
  app.get('/readyz', async () => ({ status: 'READY' }))
  await app.listen({ host: HOST, port: Number(opts.port) })
}

async function leader(): Promise<void> {
  const waiting = new Map<number, () => void>()
  const links = await Promise.all((opts.followers ?? fail('--followers is required')).split(',').map(linkTo))
  const stored = new Set<string>()
  let nextId = 1

  const app = Fastify({ logger: false })
  app.get('/readyz', async () => ({ status: 'READY' }))
  // How many distinct instances were written, for the benchmark's end check.
  app.get('/stored', async () => ({ count: stored.size }))
  app.post('/v1/ns/instances', (request, reply) => {
    const body = request.body as { ip?: string; port?: number }
    const id = nextId++ >>> 0
    const frame = frameOf(id, Buffer.from(JSON.stringify(body)))
    return new Promise<void>((resolve, reject) => {
      // Answered once any two of the three copies are durable: a majority, whichever they are.
      let durable = 0
      const oneMore = () => {
        if (++durable !== 2) return
        waiting.delete(id)
        stored.add(`${body.ip}:${body.port}`)
        resolve()
      }
      waiting.set(id, oneMore)
      for (const link of links) link.write(frame)
      append(frame.subarray(4)).then(oneMore, reject)
    }).then(() => reply.type(JSON_TYPE).send('{"ok":true}'))
  })
  await app.listen({ host: HOST, port: Number(opts.port) })

  /** A connection to a follower, retried while it starts; its acknowledgements settle writes. */
  async function linkTo(address: string): Promise<Socket> {
    const [host, port] = address.split(':')
    for (let attempt = 0; ; attempt++) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(Number(port), host, () => resolve(s))
          s.once('error', reject)
        })
        socket.setNoDelay(true)
        onAcks(socket, (id) => waiting.get(id)?.())
        socket.on('error', (err) => fail(`follower ${address}: ${err.message}`))
        return socket
      } catch (err) {
        if (attempt === 100) fail(`cannot reach follower ${address}: ${(err as Error).message}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }
}
