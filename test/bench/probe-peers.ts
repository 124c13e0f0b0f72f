// The other side of the probe benchmark, run as a child process so that its work does not land
// on the event loop being measured. Two roles:
//
//   targets N   listens on N TCP ports on 127.0.0.1 and prints {"ports":[...]}; then reads
//               lines from stdin: "down" closes every listener (and open connection), "up" listens
//               again on the same ports; each answers {"done":"down"|"up"}.
//   client URL  every 20 ms GETs URL (one request at a time, on one kept-alive connection) and keeps the latencies; "report"
//               on stdin prints {"latencies":[ms...]} and starts a new sample.

import { Agent, request } from 'node:http'
import { type Server, type Socket, createServer } from 'node:net'
import { createInterface } from 'node:readline'

const [role, arg] = process.argv.slice(2)

function say(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n')
}

async function targets(n: number): Promise<void> {
  const servers: Server[] = []
  const sockets = new Set<Socket>()
  let ports: number[] = []
  const open = async (port: number): Promise<Server> => {
    const server = createServer((s) => {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => sockets.delete(s))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', 511, resolve)
    })
    return server
  }
  for (let i = 0; i < n; i++) servers.push(await open(0))
  ports = servers.map((s) => (s.address() as { port: number }).port)
  say({ ports })
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'down') {
      for (const s of sockets) s.destroy()
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
      say({ done: 'down' })
    } else if (line === 'up') {
      servers.length = 0
      for (const port of ports) servers.push(await open(port))
      say({ done: 'up' })
    }
  }
}

async function client(url: string): Promise<void> {
  let latencies: number[] = []
  // One kept-alive connection, as a discovery client holds.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const get = () =>
    new Promise<void>((resolve) => {
      const started = performance.now()
      const req = request(url, { agent }, (res) => {
        res.resume()
        res.on('end', () => {
          latencies.push(performance.now() - started)
          resolve()
        })
      })
      req.on('error', () => resolve())
      req.end()
    })
  void (async () => {
    for (;;) {
      await get()
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'report') {
      say({ latencies })
      latencies = []
    }
  }
}

if (role === 'targets') await targets(Number(arg))
else if (role === 'client') await client(arg!)
else {
  process.stderr.write('usage: probe-peers targets N | client URL\n')
  process.exit(2)
}
