// Server heartbeats on a real cluster of processes (issue 5): every node publishes every member
// with its state, addresses and last heartbeat at /v1/cluster/members, and the whole cluster as it
// sees it at /v1/cluster/status. A node killed with SIGKILL is SUSPICIOUS on the others at once,
// DOWN three heartbeat periods later, and UP again when it restarts; Distro stops giving it
// clients meanwhile. A node restarted at another peer address keeps its id and data once its
// address is changed through the log (PUT /v1/cluster/members/{id}). The heartbeat period is 1 s
// here (DOWN after 3 s) to keep the test short; the thresholds scale with it (unit tests).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ADMIN, type Cluster, cluster } from '../helpers/cluster.js'
import { type ServerProcess, request, startServer } from '../helpers/process.js'
import { eventually } from '../helpers/eventually.js'

const PERIOD_MS = 1_000

interface Member {
  id: string
  self: boolean
  kind: 'voter' | 'learner' | null
  state: 'UP' | 'SUSPICIOUS' | 'DOWN'
  clientAddress: string | null
  peerAddress: string | null
  lastHeartbeatAgoMs: number | null
  ready: boolean | null
}

interface Members {
  voters: string[]
  learners: string[]
  addresses: Record<string, string>
  members: Member[]
}

const url = (c: Cluster, id: string) => c.servers.get(id)!.url
const hostPort = (u: string) => new URL(u).host

async function members(c: Cluster, via: string): Promise<Members> {
  const res = await request(`${url(c, via)}/v1/cluster/members`, 'GET')
  if (res.status !== 200) throw new Error(`GET /v1/cluster/members on ${via}: ${res.status}`)
  return res.body as Members
}

async function stateOn(c: Cluster, via: string, id: string): Promise<Member['state'] | undefined> {
  return (await members(c, via)).members.find((m) => m.id === id)?.state
}

async function allUp(c: Cluster, ids: string[]): Promise<void> {
  for (const via of ids) {
    await eventually(`${via} to see ${ids.join(', ')} UP and ready`, async () => {
      const m = await members(c, via)
      return ids.every((id) => m.members.find((x) => x.id === id)?.state === 'UP' && m.members.find((x) => x.id === id)?.ready) ? true : undefined
    })
  }
}

t.test('members are published with their state; a killed node is SUSPICIOUS, then DOWN, then UP after a restart', async (t) => {
  const c = await cluster(t, ['--member-heartbeat-ms', String(PERIOD_MS)])
  const leader = await c.leader()
  const started = Date.now()
  await allUp(c, c.ids)
  t.comment(`every node saw every member UP ${Date.now() - started} ms after the leader was known`)

  // Reports sent while a node was still starting lack its client address or a commit index; the
  // next heartbeat (or the one a node sends as it starts listening) brings them.
  const follower = c.ids.find((id) => id !== leader)!
  for (const via of ['n1', follower]) {
    await eventually(`${via} to have every member's report`, async () => {
      const s = (await request(`${url(c, via)}/v1/cluster/status`, 'GET')).body
      return s.members.every((m: { clientAddress: string | null; commitIndex: number | null }) => m.clientAddress !== null && m.commitIndex! > 0) ? true : undefined
    })
  }

  // The list: every member, with its addresses, the old fields kept.
  const list = await members(c, 'n1')
  t.same([...list.voters].sort(), ['n1', 'n2', 'n3'])
  t.same(list.learners, [])
  t.same(Object.keys(list.addresses).sort(), ['n1', 'n2', 'n3'])
  t.same(
    list.members.map((m) => m.id),
    ['n1', 'n2', 'n3'],
    'this node first, then the others',
  )
  for (const m of list.members) {
    t.equal(m.clientAddress, hostPort(url(c, m.id)), `${m.id}'s client address is where it listens`)
    t.equal(m.peerAddress, list.addresses[m.id], `${m.id}'s peer address`)
    t.match(m, { kind: 'voter', state: 'UP', ready: true, self: m.id === 'n1' })
    if (m.self) t.equal(m.lastHeartbeatAgoMs, null)
    else t.ok(m.lastHeartbeatAgoMs! >= 0 && m.lastHeartbeatAgoMs! <= 1.5 * PERIOD_MS, `${m.id} heard ${m.lastHeartbeatAgoMs} ms ago`)
  }

  // The status: the whole cluster as a follower sees it.
  const status = (await request(`${url(c, follower)}/v1/cluster/status`, 'GET')).body
  t.match(status, { id: follower, role: 'follower', leaderId: leader, ready: true, heartbeat: { periodMs: PERIOD_MS, suspectAfterMs: 1_500, downAfterMs: 3_000 } })
  t.same(status.members.map((m: Member) => m.id).sort(), ['n1', 'n2', 'n3'])
  for (const m of status.members) {
    t.match(m, { state: 'UP', kind: 'voter', term: status.term, leaderId: leader, ready: true }, `${m.id} in the status`)
    t.equal(m.role, m.id === leader ? 'leader' : 'follower', `${m.id}'s role, from its own heartbeat`)
    t.ok(Number.isInteger(m.commitIndex) && m.commitIndex > 0 && m.appliedIndex <= m.commitIndex, `${m.id}: commit ${m.commitIndex}, applied ${m.appliedIndex}`)
    t.match(m.distro, { loaded: true, clients: 0, queuedSyncs: 0 })
  }
  t.match(status.distro, { loaded: true, clients: 0, queuedSyncs: 0, healthyMembers: ['n1', 'n2', 'n3'] })
  t.type(status.distro.stats.syncBatchesSent, 'number')

  // A follower is killed. Its connections close at once: SUSPICIOUS; DOWN three periods after it
  // was last heard.
  const victim = c.ids.filter((id) => id !== leader).pop()!
  const watchers = c.ids.filter((id) => id !== victim)
  const seen = new Map<string, { state: string; at: number }[]>(watchers.map((w) => [w, []]))
  await c.kill(victim)
  const killedAt = Date.now()
  const watch = async () => {
    for (;;) {
      let done = true
      for (const w of watchers) {
        const s = (await stateOn(c, w, victim))!
        const log = seen.get(w)!
        if (log.length === 0 || log[log.length - 1]!.state !== s) log.push({ state: s, at: Date.now() - killedAt })
        if (s !== 'DOWN') done = false
      }
      if (done || Date.now() - killedAt > 10_000) return
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  await watch()
  for (const w of watchers) {
    const log = seen.get(w)!
    t.comment(`${w} saw ${victim}: ${log.map((e) => `${e.state} at ${e.at} ms`).join(', ')}`)
    const suspicious = log.find((e) => e.state === 'SUSPICIOUS')
    const down = log.find((e) => e.state === 'DOWN')
    t.ok(suspicious, `${w} saw ${victim} SUSPICIOUS`)
    t.ok(suspicious && suspicious.at < PERIOD_MS + 500, `${w}: SUSPICIOUS within a second (${suspicious?.at} ms)`)
    t.ok(down && suspicious && down.at > suspicious.at, `${w}: then DOWN (${down?.at} ms)`)
    t.ok(down && down.at <= 3 * PERIOD_MS + 1_000, `${w}: DOWN within three periods of its last heartbeat`)
  }
  const whileDown = (await request(`${url(c, leader)}/v1/cluster/status`, 'GET')).body
  t.same(whileDown.distro.healthyMembers, watchers, `Distro gives ${victim} no clients while it is not UP`)
  const lastKnown = list.members.find((m) => m.id === victim)!.clientAddress
  t.match(whileDown.members.find((m: Member) => m.id === victim), { state: 'DOWN', role: 'follower', clientAddress: lastKnown }, 'its last report is kept')
  t.ok(whileDown.members.find((m: Member) => m.id === victim).lastHeartbeatAgoMs >= 3 * PERIOD_MS)

  // It comes back on its data: UP on the others again.
  await c.start(victim)
  const restartedAt = Date.now()
  await allUp(c, c.ids)
  t.comment(`${victim} was UP on every node ${Date.now() - restartedAt} ms after it was ready`)
  await eventually(`${leader} to learn ${victim}'s new client address`, async () => {
    const m = (await members(c, leader)).members.find((x) => x.id === victim)!
    return m.clientAddress === hostPort(url(c, victim)) ? true : undefined
  })
  await eventually(`Distro to give ${victim} clients again`, async () => {
    const s = (await request(`${url(c, leader)}/v1/cluster/status`, 'GET')).body
    return s.distro.healthyMembers.length === 3 ? true : undefined
  })

  // Removed through the path form of DELETE (sent to the other follower): gone from every list.
  const removed = await request(`${url(c, watchers.find((id) => id !== leader)!)}/v1/cluster/members/${victim}`, 'DELETE', undefined, ADMIN)
  t.equal(removed.status, 200, JSON.stringify(removed.body))
  t.notOk((removed.body as Members).voters.includes(victim))
  await eventually(`${victim} to leave every list`, async () => {
    for (const via of watchers) if ((await members(c, via)).members.some((m) => m.id === victim)) return undefined
    return true
  })
})

t.test('a node restarted at another peer address keeps its id and data once its address is changed', async (t) => {
  const c = await cluster(t, ['--member-heartbeat-ms', String(PERIOD_MS)])
  const leader = await c.leader()
  await allUp(c, c.ids)
  // A follower moves, so that the other two keep a leader throughout.
  const mover = c.ids.filter((id) => id !== leader).pop()!
  const other = c.ids.find((id) => id !== leader && id !== mover)!
  const before = await request(`${url(c, leader)}/v1/ns/instances`, 'POST', { service: 'kept', ip: '10.0.0.1', port: 1, ephemeral: false })
  t.equal(before.status, 200)
  const oldAddress = (await members(c, leader)).addresses[mover]!

  await c.kill(mover)
  const { peerAddress } = await c.startMoved(mover)
  // The others still dial the old address: they hear n3 (it dials them), but cannot reach it.
  const moved = await eventually(`${leader} to hear ${mover} at its new place`, async () => {
    const m = (await members(c, leader)).members.find((x) => x.id === mover)!
    return m.lastHeartbeatAgoMs !== null && m.lastHeartbeatAgoMs < PERIOD_MS && m.clientAddress === hostPort(url(c, mover)) ? m : undefined
  })
  t.not(moved.state, 'UP', `${mover} is ${moved.state}: ${leader} cannot reach it at ${oldAddress}`)
  t.equal(moved.peerAddress, oldAddress)
  const during = await request(`${url(c, leader)}/v1/ns/instances`, 'POST', { service: 'kept', ip: '10.0.0.1', port: 2, ephemeral: false })
  t.equal(during.status, 200, 'the other two keep taking writes')

  // Bad address changes change nothing.
  const bad: [string, unknown, number, string][] = [
    [`/v1/cluster/members/${mover}`, { address: 'nowhere' }, 400, 'INVALID_ARGUMENT'],
    [`/v1/cluster/members/${mover}`, {}, 400, 'INVALID_ARGUMENT'],
    ['/v1/cluster/members/n9', { address: peerAddress }, 409, 'MEMBERSHIP_CONFLICT'],
    [`/v1/cluster/members/${mover}`, { address: (await members(c, leader)).addresses[other] }, 409, 'MEMBERSHIP_CONFLICT'],
    ['/v1/cluster/members/bad%20id', { address: peerAddress }, 400, 'INVALID_ARGUMENT'],
  ]
  for (const [path, body, status, code] of bad) {
    const res = await request(`${url(c, other)}${path}`, 'PUT', body, ADMIN)
    t.equal(res.status, status, `PUT ${path} ${JSON.stringify(body)}`)
    t.equal(res.body.code, code)
  }

  // The address changes through the log (sent to any node); everyone redials n3 there.
  const changed = await request(`${url(c, other)}/v1/cluster/members/${mover}`, 'PUT', { address: peerAddress }, ADMIN)
  t.equal(changed.status, 200, JSON.stringify(changed.body))
  t.equal((changed.body as Members).addresses[mover], peerAddress)
  t.same([...(changed.body as Members).voters].sort(), ['n1', 'n2', 'n3'], 'still a voter: same id, same vote')
  const again = await request(`${url(c, leader)}/v1/cluster/members/${mover}`, 'PUT', { address: peerAddress }, ADMIN)
  t.equal(again.status, 200, 'asking again is harmless')
  await allUp(c, c.ids)
  for (const via of c.ids) t.equal((await members(c, via)).addresses[mover], peerAddress, `${via} knows ${mover}'s new address`)

  // Its data: what it held before the move, and what was written while it could not be reached.
  const moverData = await eventually(`${mover} to catch up`, async () => {
    const res = await request(`${url(c, mover)}/v1/ns/instances?service=kept`, 'GET')
    return res.status === 200 && res.body.instances.length === 2 ? res.body : undefined
  })
  t.same(moverData.instances.map((i: { port: number }) => i.port).sort(), [1, 2])
  const s3 = await c.status(mover)
  t.equal(s3.role, 'follower')
  t.same([...s3.membership.voters].sort(), ['n1', 'n2', 'n3'], `${mover} keeps its identity: the same voter`)
})

t.test('settings from a config file, overridden by flags; a bad file stops the server with a clear error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-config-'))
  const servers: ServerProcess[] = []
  t.teardown(async () => {
    for (const s of servers) s.child.kill('SIGKILL')
    await Promise.all(servers.map((s) => s.exited))
    rmSync(dir, { recursive: true, force: true })
  })
  const file = join(dir, 'grace.json')
  writeFileSync(file, JSON.stringify({ 'node-id': 'alpha', port: 1, 'client-address': 'grace.example:8848', 'log-level': 'info' }), { mode: 0o600 })
  // startServer passes --port 0, which overrides the file's port.
  const server = await startServer(join(dir, 'data'), ['--config', file])
  servers.push(server)
  const status = (await request(`${server.url}/v1/cluster/status`, 'GET')).body
  t.match(status, { id: 'alpha', members: [{ id: 'alpha', clientAddress: 'grace.example:8848' }] })

  writeFileSync(file, JSON.stringify({ 'node-id': 'alpha', prot: 8848 }))
  await t.rejects(startServer(join(dir, 'data2'), ['--config', file]), /unknown setting "prot"/)
  writeFileSync(file, '{"members": {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}, "node-id": "a"}')
  await t.rejects(startServer(join(dir, 'data3'), ['--config', file]), /a cluster needs --cluster-secret/, 'no default secret, from a file either')
})
