// A real cluster of Grace processes on loopback, for integration tests: three voters n1..n3,
// each with its own data directory, and new nodes that join a running cluster (--join).

import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { type ServerProcess, request, startServer } from '../helpers/process.js'

export const SECRET = 'test-cluster-secret-0123456789'
/** The header that requests changing the cluster (membership, leadership) must carry. */
export const ADMIN = { authorization: `Bearer ${SECRET}` }

export async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

export interface Cluster {
  ids: string[]
  servers: Map<string, ServerProcess>
  start(id: string): Promise<ServerProcess>
  kill(id: string): Promise<void>
  /**
   * Starts a stopped node on its data directory with a new peer port, as an operator moving it
   * would; later starts of any node list it there. Answers the new peer address.
   */
  startMoved(id: string): Promise<{ server: ServerProcess; peerAddress: string }>
  status(id: string): Promise<{ role: string; leaderId: string | null; term: number; commitIndex: number; appliedIndex: number; membership: { voters: string[]; learners: string[] }; distro: { healthyMembers: string[] } }>
  leader(): Promise<string>
  /** Starts a new node with --join: it knows the running members and waits to be added. */
  startJoiner(id: string): Promise<{ server: ServerProcess; peerAddress: string }>
  /**
   * Starts a stopped node again with --join on an empty data directory and its old peer address,
   * as an operator adds back a member that was removed and wiped. Answers that peer address.
   */
  startRejoiner(id: string): Promise<{ server: ServerProcess; peerAddress: string }>
}

export async function cluster(t: Test, extraArgs: string[] = []): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'grace-cluster-'))
  const ids = ['n1', 'n2', 'n3']
  const peerPorts = await Promise.all(ids.map(() => freePort()))
  let members = ids.map((id, i) => `${id}=127.0.0.1:${peerPorts[i]}`).join(',')
  const servers = new Map<string, ServerProcess>()
  const c: Cluster = {
    ids,
    servers,
    async start(id) {
      const s = await startServer(join(dir, id), ['--node-id', id, '--members', members, '--cluster-secret', SECRET, ...extraArgs])
      servers.set(id, s)
      return s
    },
    async kill(id) {
      const s = servers.get(id)!
      s.child.kill('SIGKILL')
      await s.exited
      servers.delete(id)
    },
    async startMoved(id) {
      const peerAddress = `127.0.0.1:${await freePort()}`
      members = members
        .split(',')
        .map((m) => (m.startsWith(`${id}=`) ? `${id}=${peerAddress}` : m))
        .join(',')
      return { server: await c.start(id), peerAddress }
    },
    async status(id) {
      return (await request(`${servers.get(id)!.url}/v1/cluster/status`, 'GET')).body
    },
    async startJoiner(id) {
      const peerAddress = `127.0.0.1:${await freePort()}`
      members = `${members},${id}=${peerAddress}`
      const server = await startServer(join(dir, id), ['--node-id', id, '--members', members, '--cluster-secret', SECRET, '--join', ...extraArgs])
      servers.set(id, server)
      return { server, peerAddress }
    },
    async startRejoiner(id) {
      if (servers.has(id)) throw new Error(`${id} is running: kill it first`)
      rmSync(join(dir, id), { recursive: true, force: true })
      const entry = members.split(',').find((m) => m.startsWith(`${id}=`))
      if (!entry) throw new Error(`${id} was never a member`)
      const server = await startServer(join(dir, id), ['--node-id', id, '--members', members, '--cluster-secret', SECRET, '--join', ...extraArgs])
      servers.set(id, server)
      return { server, peerAddress: entry.slice(id.length + 1) }
    },
    async leader() {
      for (let i = 0; i < 100; i++) {
        for (const id of servers.keys()) {
          const s = await c.status(id)
          if (s.role === 'leader') return id
        }
        await new Promise((r) => setTimeout(r, 50))
      }
      throw new Error('no leader in 5 s')
    },
  }
  t.teardown(async () => {
    for (const s of servers.values()) s.child.kill('SIGKILL')
    await Promise.all([...servers.values()].map((s) => s.exited))
    rmSync(dir, { recursive: true, force: true })
  })
  await Promise.all(ids.map((id) => c.start(id)))
  return c
}

