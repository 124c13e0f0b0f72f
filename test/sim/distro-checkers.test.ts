// Checker 2 of the Distro simulator on its own (distro-checkers.ts): a LIVE client's instance
// must not leave any node's store, except as the late copy of a removal made while the client
// was not LIVE, reaching a node whose copy was older than that removal.

import t from 'tap'
import type { Instance } from '../../src/naming/model.js'
import { Liveness, NoLiveRemovalChecker, PROTECT_MS } from './distro-checkers.js'

function instance(port: number): Instance {
  return { namespace: 'public', group: 'DEFAULT_GROUP', service: 's', cluster: 'DEFAULT', ip: '10.0.0.1', port, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId: 'c' }
}
const rec = (version: number, ...ports: number[]) => ({ clientId: 'c', version, instances: ports.map(instance) })

function setup() {
  let now = 0
  const liveness = new Liveness()
  liveness.startBeating('c')
  const checker = new NoLiveRemovalChecker(liveness, () => now)
  return { liveness, checker, at: (ms: number) => (now = ms), beat: () => liveness.counted('c', now) }
}

t.test("a LIVE client's instance dropped anywhere is a violation", async (t) => {
  const { checker, beat } = setup()
  beat()
  checker.onChange('n1', 'c', rec(1, 80, 81), rec(2, 80), 'local', 2)
  t.equal(checker.violations.length, 1)
  t.match(checker.violations[0], /node n1 dropped .*:81 of c/)
})

t.test('a removal made while the client was not LIVE may reach, later, a node that missed it', async (t) => {
  const { checker, beat, at } = setup()
  beat()
  at(PROTECT_MS + 1)
  // The owner removes :81 of a client that is not LIVE (its beats went elsewhere).
  checker.onChange('n1', 'c', rec(1, 80, 81), rec(5, 80), 'local', 5)
  t.same(checker.violations, [])
  beat()
  // A node cut off meanwhile held the old copy (version 1); it gets a newer record without :81.
  checker.onChange('n2', 'c', rec(1, 80, 81), rec(7, 80), 'remote', 7)
  t.same(checker.violations, [], 'the late copy of the allowed removal')
  t.equal(checker.stats.lateRemovals, 1)
  // An old copy loaded by a restarted node does not count as :81 registered again.
  checker.onChange('n3', 'c', undefined, rec(1, 80, 81), 'remote', 1)
  checker.onChange('n3', 'c', rec(1, 80, 81), rec(7, 80), 'remote', 7)
  t.same(checker.violations, [], 'nor does a copy of the old record loaded later')
})

t.test("a late copy is allowed only over a copy older than the allowed removal, and never as a node's own write", async (t) => {
  const { checker, beat, at } = setup()
  beat()
  at(PROTECT_MS + 1)
  checker.onChange('n1', 'c', rec(1, 80, 81), rec(5, 80), 'local', 5)
  beat()
  // n1 registers :81 again (version 6). n2, cut off from n1, held version 1 and gets a record
  // (version 8) that carries the removal at 5 but not the registration at 6: it cannot know of it.
  checker.onChange('n1', 'c', rec(5, 80), rec(6, 80, 81), 'local', 6)
  checker.onChange('n2', 'c', rec(1, 80, 81), rec(8, 80), 'remote', 8)
  t.same(checker.violations, [], "a node that missed the removal and the registration applies the removal (seed 2522)")
  // n1 held the registration (6, newer than the removal): a copy that drops :81 there is not late.
  checker.onChange('n1', 'c', rec(6, 80, 81), rec(9, 80), 'remote', 9)
  t.equal(checker.violations.length, 1, 'dropped from a copy newer than the allowed removal')
  // A node's own write is a decision, not a late copy, whatever its copy held.
  checker.onChange('n3', 'c', rec(1, 80, 81), rec(10, 80), 'local', 10)
  t.equal(checker.violations.length, 2, "a node's own removal of a LIVE client's instance")
  // A copy older than the removal that drops it is not the removal arriving late either.
  const other = setup()
  other.beat()
  other.at(PROTECT_MS + 1)
  other.checker.onChange('n1', 'c', rec(3, 80, 81), rec(5, 80), 'local', 5)
  other.beat()
  other.checker.onChange('n2', 'c', rec(1, 80, 81), rec(4, 80), 'remote', 4)
  t.equal(other.checker.violations.length, 1, 'version 4 is older than the removal (5): another removal')
})
