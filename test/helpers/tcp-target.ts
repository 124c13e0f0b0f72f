// A TCP target on loopback for probe tests: it can be stopped and started again on its port, and
// counts the connections it accepted.

import { type Server, type Socket, createServer } from 'node:net'
import type { Test } from 'tap'

export interface TcpTarget {
  readonly port: number
  up(): Promise<void>
  down(): Promise<void>
  /** Connections accepted since the start or the last reset. */
  accepted(): number
  resetAccepted(): void
}

export async function tcpTarget(t: Test): Promise<TcpTarget> {
  let server: Server | null = null
  const sockets = new Set<Socket>()
  let port = 0
  let accepted = 0
  const up = async () => {
    server = createServer((s) => {
      accepted++
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => sockets.delete(s))
    })
    await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r))
    port = (server.address() as { port: number }).port
  }
  const down = async () => {
    for (const s of sockets) s.destroy()
    await new Promise((r) => server!.close(r))
    server = null
  }
  await up()
  t.teardown(async () => {
    if (server) await down()
  })
  return { port, up, down, accepted: () => accepted, resetAccepted: () => (accepted = 0) }
}
