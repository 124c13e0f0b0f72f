// A real 3-node cluster of processes on loopback: writes through any node, linearizable reads
// from every node, leader failure, catch-up after restart, and fast failure without a quorum.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { cluster } from '../helpers/cluster.js'
import { request, startServer } from '../helpers/process.js'

t.test('a 3-node cluster: writes anywhere, reads everywhere, survives the loss of its leader', async (t) => {
  const c = await cluster(t)
  const leader = await c.leader()
  const follower = c.ids.find((id) => id !== leader)!
  const url = (id: string) => c.servers.get(id)!.url

  // A persistent registration sent to a follower is forwarded and visible on every node.
  const reg = await request(`${url(follower)}/v1/ns/instances`, 'POST', { service: 'pay', ip: '10.0.0.1', port: 8080, ephemeral: false })
  t.equal(reg.status, 200, JSON.stringify(reg.body))
  const cfg = await request(`${url(follower)}/v1/cs/configs`, 'POST', { dataId: 'app.yaml', content: 'a: 1' })
  t.equal(cfg.status, 200)
  for (const id of c.ids) {
    const list = await request(`${url(id)}/v1/ns/instances?service=pay`, 'GET')
    t.same(list.body.instances.map((i: { port: number }) => i.port), [8080], `${id} sees the registration at once (linearizable read)`)
    t.equal((await request(`${url(id)}/v1/cs/configs?dataId=app.yaml`, 'GET')).body.content, 'a: 1')
  }

  // Kill the leader: a new one is elected and CP writes resume.
  const killedAt = Date.now()
  await c.kill(leader)
  const survivor = c.ids.find((id) => id !== leader)!
  let resumedAt = 0
  for (let i = 0; i < 200 && !resumedAt; i++) {
    const res = await request(`${url(survivor)}/v1/ns/instances`, 'POST', { service: 'pay', ip: '10.0.0.2', port: 8080, ephemeral: false }).catch(() => ({ status: 0, body: null }))
    if (res.status === 200) resumedAt = Date.now()
    else await new Promise((r) => setTimeout(r, 25))
  }
  t.ok(resumedAt > 0, 'writes resumed')
  t.comment(`CP writes resumed ${resumedAt - killedAt} ms after SIGKILL of the leader ${leader} (issue 5: within 2 s; asserted below with room for a loaded machine)`)
  t.ok(resumedAt - killedAt < 5000, `resumed within 5 s (${resumedAt - killedAt} ms)`)
  const newLeader = await c.leader()
  t.not(newLeader, leader)

  // The killed node restarts on its data and catches up.
  await c.start(leader)
  let caughtUp = false
  for (let i = 0; i < 100 && !caughtUp; i++) {
    const list = await request(`${url(leader)}/v1/ns/instances?service=pay&stale=true`, 'GET')
    caughtUp = list.body.instances.length === 2
    if (!caughtUp) await new Promise((r) => setTimeout(r, 50))
  }
  t.ok(caughtUp, 'the restarted node caught up')
  const statuses = await Promise.all(c.ids.map((id) => c.status(id)))
  t.equal(new Set(statuses.map((s) => s.leaderId)).size, 1, 'all agree on the leader')
})

t.test('7: a node that missed more than the leader keeps receives a snapshot, installs it, and catches up', async (t) => {
  const c = await cluster(t, ['--snapshot-every', '20', '--snapshot-retain', '5'])
  const leader = await c.leader()
  const lagging = c.ids.find((id) => id !== leader)!
  const url = (id: string) => c.servers.get(id)!.url
  await request(`${url(leader)}/v1/cs/configs`, 'POST', { dataId: 'before', content: 'x' })
  await c.kill(lagging)
  // Far more than the leader keeps: its log is compacted past what the lagging node has.
  for (let i = 0; i < 120; i++) {
    const res = await request(`${url(leader)}/v1/ns/instances`, 'POST', { service: 'snap', ip: '10.0.1.1', port: 1000 + i, ephemeral: false })
    if (res.status !== 200) t.fail(`write ${i}: ${JSON.stringify(res.body)}`)
  }
  await request(`${url(leader)}/v1/cs/configs`, 'POST', { dataId: 'after', content: 'y' })
  await c.start(lagging)
  let count = 0
  for (let i = 0; i < 100 && count !== 120; i++) {
    const list = await request(`${url(lagging)}/v1/ns/instances?service=snap&stale=true`, 'GET')
    count = list.body.instances.length
    if (count !== 120) await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(count, 120, 'the restarted node has every instance')
  // Log lines are flushed every second.
  const installed = () => c.servers.get(lagging)!.logs.some((l) => l.msg === 'snapshot installed')
  for (let i = 0; i < 30 && !installed(); i++) await new Promise((r) => setTimeout(r, 100))
  t.ok(installed(), 'it got there by a snapshot, not the log')
  t.equal((await request(`${url(lagging)}/v1/cs/configs?dataId=after&stale=true`, 'GET')).body.content, 'y')
  t.equal((await request(`${url(lagging)}/v1/cs/configs?dataId=before&stale=true`, 'GET')).body.content, 'x')
  // History came with the snapshot too, and the node keeps following the log afterwards.
  await request(`${url(leader)}/v1/cs/configs`, 'POST', { dataId: 'after', content: 'z' })
  let content = ''
  for (let i = 0; i < 50 && content !== 'z'; i++) {
    content = (await request(`${url(lagging)}/v1/cs/configs?dataId=after&stale=true`, 'GET')).body.content
    if (content !== 'z') await new Promise((r) => setTimeout(r, 50))
  }
  t.equal(content, 'z')
  const history = await request(`${url(lagging)}/v1/cs/configs/history?dataId=after&stale=true`, 'GET')
  t.same(history.body.items.map((h: { content: string }) => h.content), ['z', 'y'])
  const status = await c.status(lagging)
  t.equal(status.appliedIndex, (await c.status(leader)).appliedIndex)
})

t.test('without a quorum, CP writes fail fast with 503 and reads do not hang', async (t) => {
  const c = await cluster(t)
  const leader = await c.leader()
  const others = c.ids.filter((id) => id !== leader)
  for (const id of others) await c.kill(id)
  const url = c.servers.get(leader)!.url
  const started = Date.now()
  const res = await request(`${url}/v1/ns/instances`, 'POST', { service: 'pay', ip: '10.0.0.1', port: 1, ephemeral: false })
  t.equal(res.status, 503)
  t.equal(res.body.code, 'UNAVAILABLE')
  t.ok(Date.now() - started < 7000, `failed in ${Date.now() - started} ms, never hangs`)
  // Ephemeral (AP) registrations keep working on the isolated node.
  const eph = await request(`${url}/v1/ns/instances`, 'POST', { service: 'eph', ip: '10.0.0.1', port: 1 })
  t.equal(eph.status, 200)
})

t.test('a node refuses to join a cluster without a secret', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-nosecret-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await t.rejects(startServer(dir, ['--node-id', 'n1', '--members', 'n1=127.0.0.1:1,n2=127.0.0.1:2']), /cluster-secret/)
})
