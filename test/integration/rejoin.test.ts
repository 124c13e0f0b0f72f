// A member removed, wiped and added back, twice over, on a real cluster of processes: the
// second node to come back catches up through a log in which its leader was removed and later
// re-added. Its own file: the joins and catch-ups take tens of seconds on a loaded machine.

import t from 'tap'
import { ADMIN, cluster } from '../helpers/cluster.js'
import { request } from '../helpers/process.js'
import { eventually } from '../helpers/eventually.js'

interface Members {
  voters: string[]
}

t.test('a member removed, wiped and added back takes the leadership; another re-added the same way catches up from it', async (t) => {
  // The second node to come back replays the whole log, the removal of the node that now leads
  // included, and only later the entry that added that node back. Between the two it must still
  // answer that leader's appends: its answers to a node outside its configuration were dropped,
  // so it never received the entry that re-added the leader and was never promoted.
  const c = await cluster(t)
  const url = (id: string) => c.servers.get(id)!.url
  const first = await c.leader()
  const [back, later] = c.ids.filter((id) => id !== first) as [string, string]
  const voters = async (via: string) => ((await request(`${url(via)}/v1/cluster/members`, 'GET')).body as Members).voters
  const addBack = async (id: string, via: string) => {
    const { peerAddress } = await c.startRejoiner(id)
    const added = await request(`${url(via)}/v1/cluster/members`, 'POST', { id, address: peerAddress }, ADMIN)
    t.equal(added.status, 200, `${id} added back: ${JSON.stringify(added.body)}`)
    await eventually(`${id} to be a voter again`, async () => ((await voters(via)).includes(id) ? true : undefined), 30_000)
  }

  const removed = await request(`${url(first)}/v1/cluster/members/${back}`, 'DELETE', undefined, ADMIN)
  t.equal(removed.status, 200, JSON.stringify(removed.body))
  await c.kill(back)
  // More entries than one append carries (256) between the removal and the re-adding, so that a
  // node replaying the log gets the two in different appends.
  const BETWEEN = 300
  for (let from = 1; from <= BETWEEN; from += 25) {
    const writes = Array.from({ length: 25 }, (_, k) => request(`${url(first)}/v1/ns/instances`, 'POST', { service: 'between', ip: '10.0.0.1', port: from + k, ephemeral: false }))
    for (const w of await Promise.all(writes)) t.equal(w.status, 200)
  }
  await addBack(back, first)

  const moved = await request(`${url(first)}/v1/cluster/leader`, 'POST', { id: back }, ADMIN)
  t.same(moved.body, { leaderId: back }, 'the node added back leads')

  t.equal((await request(`${url(back)}/v1/cluster/members/${later}`, 'DELETE', undefined, ADMIN)).status, 200)
  await c.kill(later)
  await addBack(later, back)
  t.same([...(await voters(back))].sort(), [...c.ids].sort())
  // A linearizable read on the node last added back: everything written before it came back.
  t.equal((await request(`${url(later)}/v1/ns/instances?service=between`, 'GET')).body.instances.length, BETWEEN)
})
