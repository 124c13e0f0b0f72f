// Server probes on a real 3-node cluster: only the leader probes, its verdicts reach every node
// through the log, and when the leader is killed the new leader takes the probes over.

import t from 'tap'
import { cluster } from '../helpers/cluster.js'
import { request } from '../helpers/process.js'
import { tcpTarget } from '../helpers/tcp-target.js'
import { eventually as eventuallyEvery } from '../helpers/eventually.js'

const eventually = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> => eventuallyEvery(what, probe, timeoutMs, 100)

t.test('the leader probes; when it dies the new leader takes the probes over', async (t) => {
  // The target: a TCP port on this machine that counts the probes it accepts.
  const target = await tcpTarget(t)

  const c = await cluster(t)
  const leader = await c.leader()
  const url = (id: string) => c.servers.get(id)!.url
  const follower = c.ids.find((id) => id !== leader)!
  // Set up through a follower: the writes are forwarded to the leader.
  t.equal((await request(`${url(follower)}/v1/ns/services`, 'POST', { service: 'db', ephemeral: false })).status, 200)
  const put = await request(`${url(follower)}/v1/ns/clusters`, 'PUT', { service: 'db', healthCheck: { type: 'tcp', intervalMs: 1000, timeoutMs: 500 } })
  t.equal(put.status, 200, JSON.stringify(put.body))
  t.equal((await request(`${url(follower)}/v1/ns/instances`, 'POST', { service: 'db', ip: '127.0.0.1', port: target.port, ephemeral: false })).status, 200)

  const healthOn = async (id: string) => {
    const res = await request(`${url(id)}/v1/ns/instances?service=db&stale=true`, 'GET')
    return res.body.instances?.[0]?.healthy as boolean | undefined
  }
  const probesOn = async (id: string) => (await request(`${url(id)}/v1/cluster/status`, 'GET')).body.health?.probes as { prober: boolean; targets: number } | undefined

  await eventually('the leader to probe', async () => ((await probesOn(leader))?.targets === 1 ? true : undefined))
  for (const id of c.ids) t.equal((await probesOn(id))!.prober, id === leader, `${id} ${id === leader ? 'probes' : 'does not probe'}`)
  target.resetAccepted()
  await new Promise((r) => setTimeout(r, 5000))
  const accepted = target.accepted()
  t.ok(accepted >= 3 && accepted <= 7, `one node probes: ${accepted} probes in 5 s at a 1 s interval`)

  // The target goes down: every node learns it from the log.
  await target.down()
  const downAt = Date.now()
  for (const id of c.ids) await eventually(`${id} to see the instance unhealthy`, async () => ((await healthOn(id)) === false ? true : undefined))
  t.pass(`unhealthy on every node ${Date.now() - downAt} ms after the target went down`)

  // The leader dies. The target comes back; the new leader's probes find it.
  await c.kill(leader)
  await target.up()
  const killedAt = Date.now()
  const next = await eventually('a new leader', async () => {
    for (const id of c.servers.keys()) if ((await c.status(id)).role === 'leader') return id
    return undefined
  })
  t.not(next, leader)
  for (const id of c.servers.keys()) await eventually(`${id} to see the instance healthy again`, async () => ((await healthOn(id)) === true ? true : undefined))
  t.pass(`healthy again on both remaining nodes ${Date.now() - killedAt} ms after the leader was killed`)
  t.match(await probesOn(next), { prober: true, targets: 1 }, 'the new leader probes')
  for (const id of c.servers.keys()) if (id !== next) t.equal((await probesOn(id))!.prober, false)
})
