// The membership driver (src/cluster/membership.ts) on an in-memory network and a ManualClock:
// heartbeats both ways carry each member's report, a member that dies is SUSPICIOUS at once (its
// connection drops) and DOWN after three periods, and UP again once it is back; the period is
// configurable; listeners hear every change.

import t from 'tap'
import { HEARTBEAT_METHOD } from '../../../src/cluster/heartbeat.js'
import type { MemberReport } from '../../../src/cluster/members.js'
import { Membership } from '../../../src/cluster/membership.js'
import { ManualClock } from '../../../src/core/clock.js'
import { silentLogger } from '../../../src/core/logger.js'
import { FakeNetwork, run } from '../ap/node/fake-network.js'

interface Net {
  net: FakeNetwork
  nodes: Map<string, Membership>
  down: Set<string>
  changes: string[]
  start(id: string): Membership
}

function cluster(clock: ManualClock, ids: string[], periodMs?: number): Net {
  const net = new FakeNetwork(clock, { seed: 7 })
  const down = new Set<string>()
  const changes: string[] = []
  const nodes = new Map<string, Membership>()
  const c: Net = {
    net,
    nodes,
    down,
    changes,
    start(id) {
      const m = new Membership({
        self: id,
        transport: net.transport(id),
        clock,
        logger: silentLogger,
        ...(periodMs !== undefined ? { periodMs } : {}),
        members: () => ids,
        // Like the peer transport: a connection to a node that is down drops at once.
        connected: (peer) => !down.has(peer) && !down.has(id),
        report: (): MemberReport => ({
          id,
          clientAddress: `127.0.0.1:${8000 + ids.indexOf(id)}`,
          peerAddress: `127.0.0.1:${9000 + ids.indexOf(id)}`,
          role: id === 'a' ? 'leader' : 'follower',
          term: 2,
          leaderId: 'a',
          commitIndex: 5,
          appliedIndex: 5,
          ready: true,
          distro: null,
        }),
      })
      m.onChange((cs) => {
        for (const ch of cs) changes.push(`${id}: ${ch.id} ${ch.from}->${ch.to}`)
      })
      nodes.set(id, m)
      m.start()
      return m
    },
  }
  for (const id of ids) c.start(id)
  return c
}

const stateOf = (c: Net, viewer: string, id: string) => c.nodes.get(viewer)!.state(id)

t.test('members exchange reports and are UP within a round trip of starting', async (t) => {
  const clock = new ManualClock()
  const c = cluster(clock, ['a', 'b', 'c'])
  await run(clock, 50)
  for (const viewer of ['a', 'b', 'c']) for (const id of ['a', 'b', 'c']) t.equal(stateOf(c, viewer, id), 'UP', `${viewer} sees ${id} UP`)
  const seen = c.nodes.get('b')!.views().find((v) => v.id === 'a')!
  t.match(seen.report, { id: 'a', role: 'leader', clientAddress: '127.0.0.1:8000', commitIndex: 5 })
  t.ok(seen.lastHeardAgoMs! < 50)
  // Each pair talks once a period per direction: 6 calls a period in a cluster of 3.
  const before = c.net.calls.get(HEARTBEAT_METHOD)!
  await run(clock, 5_000 * 4)
  const per = (c.net.calls.get(HEARTBEAT_METHOD)! - before) / 4
  t.ok(per >= 5 && per <= 7, `about 6 heartbeats a period (${per})`)
  t.ok(c.nodes.get('b')!.views().every((v) => v.lastHeardAgoMs! <= 5_050), 'never more than a period between heartbeats')
})

t.test('a member that dies is SUSPICIOUS at once, DOWN after three periods, UP again once back', async (t) => {
  const clock = new ManualClock()
  const c = cluster(clock, ['a', 'b', 'c'])
  await run(clock, 100)
  const diedAt = clock.now()
  c.down.add('c')
  c.net.setDown('c', true)
  c.nodes.get('c')!.stop()
  c.nodes.get('a')!.refresh() // what the transport does when a connection drops
  t.equal(stateOf(c, 'a', 'c'), 'SUSPICIOUS', 'a sees it at once')
  await run(clock, 1_000)
  t.equal(stateOf(c, 'b', 'c'), 'SUSPICIOUS', 'b at its next check')
  await run(clock, 12_000)
  t.equal(stateOf(c, 'a', 'c'), 'SUSPICIOUS')
  await run(clock, 3_000)
  t.equal(stateOf(c, 'a', 'c'), 'DOWN', `DOWN ${clock.now() - diedAt} ms after it died`)
  t.equal(stateOf(c, 'b', 'c'), 'DOWN')
  t.equal(stateOf(c, 'a', 'b'), 'UP', 'the others are unaffected')

  // It restarts: a fresh driver on the same id.
  c.down.delete('c')
  c.net.setDown('c', false)
  c.start('c')
  await run(clock, 1_100)
  t.equal(stateOf(c, 'a', 'c'), 'UP', 'UP again within a check')
  t.equal(stateOf(c, 'c', 'a'), 'UP')
  t.same(
    c.changes.filter((s) => s.startsWith('a: c')),
    ['a: c SUSPICIOUS->UP', 'a: c UP->SUSPICIOUS', 'a: c SUSPICIOUS->DOWN', 'a: c DOWN->UP'],
    'listeners hear each change once',
  )
})

t.test('a member that hangs (connected, but silent) is SUSPICIOUS within a period and a half', async (t) => {
  const clock = new ManualClock()
  const c = cluster(clock, ['a', 'b'])
  await run(clock, 100)
  // b stops answering and sending, but its connection stays up (a hung process, a black hole).
  c.nodes.get('b')!.stop()
  c.net.partition(['a'], ['b'])
  const hungAt = clock.now()
  while (stateOf(c, 'a', 'b') === 'UP') await run(clock, 100)
  const after = clock.now() - hungAt
  t.ok(after <= 7_600, `SUSPICIOUS after ${after} ms`)
  while (stateOf(c, 'a', 'b') !== 'DOWN') await run(clock, 100)
  t.ok(clock.now() - hungAt <= 15_100, `DOWN after ${clock.now() - hungAt} ms`)
})

t.test('the period is configurable, and the thresholds follow it', async (t) => {
  const clock = new ManualClock()
  const c = cluster(clock, ['a', 'b'], 1_000)
  t.same(c.nodes.get('a')!.thresholds(), { periodMs: 1_000, suspectAfterMs: 1_500, downAfterMs: 3_000, checkMs: 250 })
  await run(clock, 100)
  const before = c.net.calls.get(HEARTBEAT_METHOD)!
  await run(clock, 10_000)
  const calls = c.net.calls.get(HEARTBEAT_METHOD)! - before
  t.ok(calls >= 18 && calls <= 22, `about 2 heartbeats a second (${calls})`)
  c.down.add('b')
  c.net.setDown('b', true)
  c.nodes.get('b')!.stop()
  await run(clock, 3_100)
  t.equal(stateOf(c, 'a', 'b'), 'DOWN', 'DOWN after three short periods')
})

t.test('a heartbeat in the name of another node is refused and recorded nowhere', async (t) => {
  const clock = new ManualClock()
  const c = cluster(clock, ['a', 'b', 'c'])
  await run(clock, 100)
  c.nodes.get('c')!.stop()
  c.down.add('c')
  c.net.setDown('c', true)
  c.nodes.get('a')!.refresh()
  await run(clock, 100)
  const heardBefore = c.nodes.get('a')!.views().find((v) => v.id === 'c')!.lastHeardAgoMs!
  const forged = c.net.transport('mallory')
  const payload = new TextEncoder().encode(
    JSON.stringify({ id: 'c', clientAddress: null, peerAddress: null, role: 'follower', term: 1, leaderId: null, commitIndex: 0, appliedIndex: 0, ready: true, distro: null }),
  )
  const answer = forged.call('a', HEARTBEAT_METHOD, payload, 1_000).then(
    () => 'answered',
    (err: { remoteCode?: string }) => err.remoteCode,
  )
  await run(clock, 100)
  t.equal(await answer, 'INVALID_ARGUMENT')
  t.ok(c.nodes.get('a')!.views().find((v) => v.id === 'c')!.lastHeardAgoMs! >= heardBefore + 100, 'c was not heard from')
  t.equal(stateOf(c, 'a', 'c'), 'SUSPICIOUS')
})
