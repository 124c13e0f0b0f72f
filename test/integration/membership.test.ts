// Membership change and leadership transfer on a real cluster of processes: a fourth node joins
// as a learner, catches up, is promoted, serves linearizable reads, takes the leadership, and an
// old member is removed; bad requests get their codes and change nothing.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ADMIN, SECRET, cluster } from '../helpers/cluster.js'
import { request, startServer } from '../helpers/process.js'
import { eventually } from '../helpers/eventually.js'

interface Members {
  voters: string[]
  learners: string[]
  addresses: Record<string, string>
  members: { id: string; state: string; kind: string | null; clientAddress: string | null }[]
}

t.test('a node joins (by a snapshot), is promoted once caught up, takes the leadership; another is removed', async (t) => {
  // The log is compacted every 10 entries, so the 20 writes below are gone from it by the time
  // n4 joins: it must be sent a snapshot.
  const c = await cluster(t, ['--snapshot-every', '10', '--snapshot-retain', '2'])
  const url = (id: string) => c.servers.get(id)!.url
  const leader = await c.leader()
  const follower = c.ids.find((id) => id !== leader)!

  // Data written before the new node exists must reach it.
  for (let port = 1; port <= 20; port++) {
    const reg = await request(`${url(leader)}/v1/ns/instances`, 'POST', { service: 'before', ip: '10.0.0.1', port, ephemeral: false })
    t.equal(reg.status, 200)
  }

  // Ephemeral clients too: the new node must hold them before it owns any (it would otherwise
  // answer their beats "not registered").
  const clients = Array.from({ length: 60 }, (_, i) => `joiner-client-${i}`)
  for (const [i, clientId] of clients.entries()) {
    const reg = await request(`${url(follower)}/v1/ns/instances`, 'POST', { service: 'eph', ip: '10.0.1.1', port: i + 1, clientId })
    t.equal(reg.status, 200)
  }
  const notRegistered: string[] = []
  let beating = true
  const beats = Promise.all(
    c.ids.map(async (via) => {
      while (beating) {
        for (const clientId of clients) {
          const r = await request(`${url(via)}/v1/ns/instances/beat`, 'PUT', { clientId })
          if (r.status === 200 && r.body.registered === false) notRegistered.push(`${clientId} via ${via}`)
        }
      }
    }),
  )

  const { peerAddress } = await c.startJoiner('n4')
  const waiting = await c.status('n4')
  t.equal(waiting.leaderId, null, 'a joining node waits to be added; it elects nobody')
  t.same((await c.status('n4')).membership, { voters: [], learners: [] })

  // Added through a follower: the change is forwarded to the leader.
  const added = await request(`${url(follower)}/v1/cluster/members`, 'POST', { id: 'n4', address: peerAddress }, ADMIN)
  t.equal(added.status, 200, JSON.stringify(added.body))
  t.ok((added.body as Members).learners.includes('n4') || (added.body as Members).voters.includes('n4'), 'n4 is a member')
  t.equal((added.body as Members).addresses.n4, peerAddress, 'its peer address travels with the membership')

  const promoted = await eventually('n4 to be promoted', async () => {
    const m = (await request(`${url(leader)}/v1/cluster/members`, 'GET')).body as Members
    return m.voters.includes('n4') ? m : undefined
  })
  t.same([...promoted.voters].sort(), ['n1', 'n2', 'n3', 'n4'])
  t.same(promoted.learners, [])
  await eventually('n4 to own clients', async () => ((await c.status('n4')).distro.healthyMembers.includes('n4') ? true : undefined))
  await new Promise((r) => setTimeout(r, 1_500))
  beating = false
  await beats
  t.same(notRegistered, [], 'no beat was answered "not registered" while n4 joined and took its share')
  t.equal((await request(`${url('n4')}/v1/ns/instances?service=eph&stale=true`, 'GET')).body.instances.length, clients.length, 'n4 holds every ephemeral instance')

  // The new voter answers linearizable reads with everything written before and after it joined.
  const after = await request(`${url(leader)}/v1/ns/instances`, 'POST', { service: 'after', ip: '10.0.0.2', port: 1, ephemeral: false })
  t.equal(after.status, 200)
  t.equal((await request(`${url('n4')}/v1/ns/instances?service=before`, 'GET')).body.instances.length, 20)
  t.equal((await request(`${url('n4')}/v1/ns/instances?service=after`, 'GET')).body.instances.length, 1)
  t.equal((await c.status('n4')).role, 'follower')
  // Log lines reach us in buffered chunks: wait for the one that says how n4 caught up.
  const installed = await eventually('n4 to log a snapshot install', async () => (c.servers.get('n4')!.logs.some((l) => l.msg === 'snapshot installed') ? true : undefined)).catch(() => false)
  t.ok(installed, 'n4 caught up from a snapshot, not the log alone')

  // Leadership moves to the new node on request, sent to any node.
  const moved = await request(`${url(follower)}/v1/cluster/leader`, 'POST', { id: 'n4' }, ADMIN)
  t.equal(moved.status, 200, JSON.stringify(moved.body))
  t.same(moved.body, { leaderId: 'n4' })
  t.equal((await c.status('n4')).role, 'leader')

  // The old leader is removed: the cluster goes on with three voters and keeps taking writes.
  const removed = await request(`${url('n4')}/v1/cluster/members?id=${leader}`, 'DELETE', undefined, ADMIN)
  t.equal(removed.status, 200, JSON.stringify(removed.body))
  t.notOk((removed.body as Members).voters.includes(leader))
  t.notOk(leader in (removed.body as Members).addresses)
  const later = await request(`${url('n4')}/v1/ns/instances`, 'POST', { service: 'later', ip: '10.0.0.3', port: 1, ephemeral: false })
  t.equal(later.status, 200)
  const remaining = c.ids.filter((id) => id !== leader)
  for (const id of remaining) t.equal((await request(`${url(id)}/v1/ns/instances?service=later`, 'GET')).body.instances.length, 1, `${id} has the write`)
})

t.test('the leader removed through a follower: the follower answers with the new membership, and the rest goes on', async (t) => {
  const c = await cluster(t)
  const url = (id: string) => c.servers.get(id)!.url
  const leader = await c.leader()
  const follower = c.ids.find((id) => id !== leader)!
  // The follower forwards the change to the leader, and applies the configuration that drops the
  // leader from its peers before the leader's answer is back: that answer must still reach it.
  const removed = await request(`${url(follower)}/v1/cluster/members/${leader}`, 'DELETE', undefined, ADMIN)
  t.equal(removed.status, 200, JSON.stringify(removed.body))
  t.same([...(removed.body as Members).voters].sort(), c.ids.filter((id) => id !== leader).sort())
  const rest = c.ids.filter((id) => id !== leader)
  const newLeader = await eventually('a leader among the two left', async () => {
    const s = (await request(`${url(follower)}/v1/cluster/status`, 'GET')).body as { leaderId: string | null }
    return s.leaderId && rest.includes(s.leaderId) ? s.leaderId : undefined
  })
  const write = await request(`${url(newLeader)}/v1/ns/instances`, 'POST', { service: 'after-removal', ip: '10.0.0.9', port: 1, ephemeral: false })
  t.equal(write.status, 200, JSON.stringify(write.body))
})

t.test('membership requests that do not fit are refused with a code and change nothing', async (t) => {
  const c = await cluster(t)
  const leader = await c.leader()
  const url = c.servers.get(leader)!.url
  const before = (await request(`${url}/v1/cluster/members`, 'GET')).body as Members

  const cases: [string, string, unknown, number, string][] = [
    ['POST', '/v1/cluster/members', { id: 'n2', address: '127.0.0.1:1' }, 409, 'MEMBERSHIP_CONFLICT'],
    ['POST', '/v1/cluster/members', { id: 'n9', address: before.addresses.n2! }, 409, 'MEMBERSHIP_CONFLICT'],
    ['POST', '/v1/cluster/members', { id: 'bad id', address: '127.0.0.1:1' }, 400, 'INVALID_ARGUMENT'],
    ['POST', '/v1/cluster/members', { id: 'n9' }, 400, 'INVALID_ARGUMENT'],
    ['POST', '/v1/cluster/members', { id: 'n9', address: 'nowhere' }, 400, 'INVALID_ARGUMENT'],
    ['POST', '/v1/cluster/members', { id: 'n9', address: '127.0.0.1:70000' }, 400, 'INVALID_ARGUMENT'],
    ['DELETE', '/v1/cluster/members?id=n9', undefined, 409, 'MEMBERSHIP_CONFLICT'],
    ['DELETE', '/v1/cluster/members', undefined, 400, 'INVALID_ARGUMENT'],
    ['DELETE', '/v1/cluster/members/n9', undefined, 409, 'MEMBERSHIP_CONFLICT'],
    ['DELETE', '/v1/cluster/members/bad%20id', undefined, 400, 'INVALID_ARGUMENT'],
    ['PUT', '/v1/cluster/members/n9', { address: '127.0.0.1:1' }, 409, 'MEMBERSHIP_CONFLICT'],
    ['PUT', '/v1/cluster/members/n2', { address: '127.0.0.1:70000' }, 400, 'INVALID_ARGUMENT'],
    ['PUT', '/v1/cluster/members/n2', { address: before.addresses.n3! }, 409, 'MEMBERSHIP_CONFLICT'],
    ['POST', '/v1/cluster/leader', { id: 'n9' }, 409, 'MEMBERSHIP_CONFLICT'],
    ['POST', '/v1/cluster/leader', {}, 400, 'INVALID_ARGUMENT'],
  ]
  for (const [method, path, body, status, code] of cases) {
    const res = await request(`${url}${path}`, method, body, ADMIN)
    t.equal(res.status, status, `${method} ${path} ${JSON.stringify(body)}`)
    t.equal(res.body.code, code)
    // Without the cluster secret, or with another, nothing is even checked: 401.
    const wrong: Record<string, string>[] = [{}, { authorization: 'Bearer not-the-secret-0123456789' }, { authorization: SECRET }]
    for (const headers of wrong) {
      const refused = await request(`${url}${path}`, method, body, headers)
      t.same([refused.status, refused.body.code], [401, 'UNAUTHENTICATED'], `${method} ${path} with ${JSON.stringify(headers)}`)
    }
  }
  const again = await request(`${url}/v1/cluster/members`, 'POST', { id: 'n2', address: '127.0.0.1:1' }, ADMIN)
  t.match(again.body.message, /n2 is already a member; to change its peer address, PUT \/v1\/cluster\/members\/n2/, 'adding a member again points to the address change')
  const after = (await request(`${url}/v1/cluster/members`, 'GET')).body as Members
  t.same({ voters: after.voters, learners: after.learners, addresses: after.addresses }, { voters: before.voters, learners: before.learners, addresses: before.addresses }, 'the membership is unchanged')
})

t.test('a standalone node has no membership to change', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-alone-'))
  const server = await startServer(dir)
  t.teardown(async () => {
    server.child.kill('SIGKILL')
    await server.exited
    rmSync(dir, { recursive: true, force: true })
  })
  const res = await request(`${server.url}/v1/cluster/members`, 'POST', { id: 'n2', address: '127.0.0.1:9999' })
  t.equal(res.status, 409)
  t.equal(res.body.code, 'MEMBERSHIP_CONFLICT')
  const port = new URL(server.url).port
  t.same((await request(`${server.url}/v1/cluster/members`, 'GET')).body, {
    voters: ['n1'],
    learners: [],
    addresses: {},
    members: [{ id: 'n1', self: true, kind: 'voter', state: 'UP', clientAddress: `127.0.0.1:${port}`, peerAddress: null, lastHeartbeatAgoMs: null, ready: true }],
  })
  t.equal((await request(`${server.url}/v1/cluster/members/n1`, 'PUT', { address: '127.0.0.1:9999' })).body.code, 'MEMBERSHIP_CONFLICT')
  t.equal((await request(`${server.url}/v1/cluster/members/n1`, 'DELETE')).body.code, 'MEMBERSHIP_CONFLICT')
  const status = (await request(`${server.url}/v1/cluster/status`, 'GET')).body
  t.match(status, { id: 'n1', role: 'leader', ready: true, heartbeat: null, distro: null, members: [{ id: 'n1', self: true, state: 'UP', role: 'leader', clientAddress: `127.0.0.1:${port}` }] })
})
