// Ephemeral instances on a real 3-node cluster (Distro): a registration sent to any node is
// applied by the node responsible for its client and seen on every node; heartbeats through any
// node keep it; with one node down the others keep taking registrations and beats, and no live
// instance is dropped by the takeover; a node that comes back loads the data from a peer.

import t from 'tap'
import { cluster } from '../helpers/cluster.js'
import { request } from '../helpers/process.js'
import { eventually } from '../helpers/eventually.js'

const CLIENTS = 30

t.test('ephemeral registrations are replicated, survive the loss of a node, and reach a node that comes back', async (t) => {
  const c = await cluster(t)
  await c.leader()
  const url = (id: string) => c.servers.get(id)!.url
  const ports = (body: { instances?: { port: number }[] }) => (body.instances ?? []).map((i) => i.port).sort((a, b) => a - b)
  const all = Array.from({ length: CLIENTS }, (_, i) => 1000 + i)
  // Let every node see the others before writing, so that ownership is settled.
  await new Promise((r) => setTimeout(r, 1500))

  // Each client registers through a different node; clientIds spread ownership over the nodes.
  for (let i = 0; i < CLIENTS; i++) {
    const via = c.ids[i % 3]!
    const res = await request(`${url(via)}/v1/ns/instances`, 'POST', { service: 'web', ip: '10.1.0.1', port: 1000 + i, clientId: `client-${i}` })
    t.equal(res.status, 200, JSON.stringify(res.body))
  }
  for (const id of c.ids) {
    await eventually(`${id} to see every instance`, async () => {
      const list = await request(`${url(id)}/v1/ns/instances?service=web`, 'GET')
      return ports(list.body).length === CLIENTS ? true : undefined
    })
  }
  t.pass('every node sees every instance')

  // Beats through any node reach the owner and are answered from its state.
  for (let i = 0; i < CLIENTS; i++) {
    const beat = await request(`${url(c.ids[(i + 1) % 3]!)}/v1/ns/instances/beat`, 'PUT', { clientId: `client-${i}` })
    t.same(beat.body, { clientBeatInterval: 5000, registered: true }, `beat of client-${i}`)
  }

  // One node goes down. The others take over its clients; as long as the clients beat (through
  // the nodes that remain), nothing is dropped, and new registrations keep working.
  const down = c.ids[2]!
  const up = c.ids.filter((id) => id !== down)
  await c.kill(down)
  const beatAll = async () => {
    let ok = true
    for (const clientId of [...Array.from({ length: CLIENTS }, (_, i) => `client-${i}`), 'client-late']) {
      const beat = await request(`${url(up[clientId.length % 2]!)}/v1/ns/instances/beat`, 'PUT', { clientId })
      if (clientId !== 'client-late' && (beat.status !== 200 || !beat.body.registered)) ok = false
    }
    return ok
  }
  // Until the others notice the node is gone (its connections close at once; the members are
  // checked every second), beats of its clients may fail; then they all work again.
  await new Promise((r) => setTimeout(r, 2000))
  const beatingUntil = Date.now() + 6000
  let beatsOk = true
  while (Date.now() < beatingUntil) {
    beatsOk = (await beatAll()) && beatsOk
    await new Promise((r) => setTimeout(r, 1000))
  }
  t.ok(beatsOk, 'beats kept being answered registered by the nodes that remain')
  const added = await request(`${url(up[0]!)}/v1/ns/instances`, 'POST', { service: 'web', ip: '10.1.0.1', port: 2000, clientId: 'client-late' })
  t.equal(added.status, 200, JSON.stringify(added.body))
  await beatAll()
  for (const id of up) {
    await eventually(`${id} to see the late registration`, async () => {
      const list = await request(`${url(id)}/v1/ns/instances?service=web`, 'GET')
      return ports(list.body).length === CLIENTS + 1 ? true : undefined
    })
    const list = await request(`${url(id)}/v1/ns/instances?service=web&healthyOnly=true`, 'GET')
    t.same(ports(list.body), [...all, 2000], `${id}: every live instance is there and healthy`)
  }

  // The node comes back and loads what it missed from a peer before it answers.
  await c.start(down)
  const back = await request(`${url(down)}/v1/ns/instances?service=web`, 'GET')
  t.same(ports(back.body), [...all, 2000], 'the returning node has everything at once')
  // Taking its clients back, it gives them a full timeout: none turns unhealthy while they beat.
  for (let round = 0; round < 3; round++) {
    await beatAll()
    await new Promise((r) => setTimeout(r, 1000))
  }
  for (const id of c.ids) {
    const healthy = await request(`${url(id)}/v1/ns/instances?service=web&healthyOnly=true`, 'GET')
    t.same(ports(healthy.body), [...all, 2000], `${id}: every live instance healthy after the restart`)
  }
})

t.test('a client that stops beating is removed from every node; one that beats through any node stays', async (t) => {
  // Before a removal its owner asks the other nodes over the peer transport (naming.silence):
  // with every node answering "none heard", the removal goes ahead.
  const c = await cluster(t)
  await c.leader()
  const url = (id: string) => c.servers.get(id)!.url
  await new Promise((r) => setTimeout(r, 1500))
  const short = { 'preserved.heart.beat.interval': '200', 'preserved.heart.beat.timeout': '600', 'preserved.ip.delete.timeout': '1200' }
  for (const [i, clientId] of ['silent-a', 'silent-b', 'silent-c', 'beating'].entries()) {
    const res = await request(`${url(c.ids[i % 3]!)}/v1/ns/instances`, 'POST', { service: 'short', ip: '10.2.0.1', port: 3000 + i, clientId, metadata: short })
    t.equal(res.status, 200, JSON.stringify(res.body))
  }
  const listed = async (id: string) => ((await request(`${url(id)}/v1/ns/instances?service=short`, 'GET')).body.instances ?? []).map((i: { port: number }) => i.port).sort()
  let beats = 0
  const beating = setInterval(() => {
    void request(`${url(c.ids[beats++ % 3]!)}/v1/ns/instances/beat`, 'PUT', { clientId: 'beating' })
  }, 200)
  t.teardown(() => clearInterval(beating))
  for (const id of c.ids) {
    await eventually(`${id} to drop the silent clients`, async () => ((await listed(id)).join() === '3003' ? true : undefined), 15_000)
  }
  t.pass('the silent clients are gone from every node; the beating one is kept')
  clearInterval(beating)
})
