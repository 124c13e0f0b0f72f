// ownership.ts: rendezvous hashing. The numbers the issue asks for (3 -> 4 members moves at most
// 35% of clients, about 25%), with modulo hashing alongside to show what Nacos's Distro did
// (issue #7242: about 75% move).

import t from 'tap'
import { hashString, SEED_A } from '../../../../src/ap/distro/hash.js'
import { Ownership, clientHash, ownershipChanges, responsibleNode } from '../../../../src/ap/distro/ownership.js'
import { clientIds, mulberry32, shuffle } from './fixtures.js'

const N = 100_000
const ids = clientIds(N)
const ABC = ['node-a', 'node-b', 'node-c']
const ABCD = ['node-a', 'node-b', 'node-c', 'node-d']

function owners(o: Ownership): (string | null)[] {
  return ids.map((id) => o.ownerOf(id))
}

function moved(before: (string | null)[], after: (string | null)[]): number {
  let n = 0
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) n++
  return n
}

const three = owners(new Ownership(ABC))
const four = owners(new Ownership(ABCD))

t.test('3 -> 4 members moves about a quarter of 100k clients, all of them to the new member', async (t) => {
  const n = moved(three, four)
  t.ok(n <= 0.35 * N, `${((100 * n) / N).toFixed(1)}% moved, at most 35%`)
  t.ok(Math.abs(n / N - 0.25) < 0.01, `${((100 * n) / N).toFixed(1)}% is within a point of 25%`)
  for (let i = 0; i < N; i++) {
    if (three[i] !== four[i] && four[i] !== 'node-d') {
      t.fail(`${ids[i]} moved from ${three[i]} to ${four[i]}, not to the new member`)
      return
    }
  }
})

t.test('modulo hashing, for contrast, moves about three quarters', async (t) => {
  const modulo = (members: string[]) => ids.map((id) => members[clientHash(id) % members.length]!)
  const n = moved(modulo(ABC), modulo(ABCD))
  t.ok(Math.abs(n / N - 0.75) < 0.01, `modulo moved ${((100 * n) / N).toFixed(1)}%`)
  t.ok(n > 2.5 * moved(three, four), 'rendezvous moves under a third of what modulo moves')
})

t.test('removing a member moves only that member\'s clients', async (t) => {
  const withoutB = owners(new Ownership(['node-a', 'node-c', 'node-d']))
  let movedOthers = 0
  let movedB = 0
  for (let i = 0; i < N; i++) {
    if (four[i] === withoutB[i]) continue
    if (four[i] === 'node-b') movedB++
    else movedOthers++
  }
  t.equal(movedOthers, 0, 'no client of a, c or d moved')
  t.equal(movedB, four.filter((o) => o === 'node-b').length, 'every client of b moved')
})

t.test('balance: each of 3 members owns a third, within 2%', async (t) => {
  for (const m of ABC) {
    const share = three.filter((o) => o === m).length / N
    t.ok(Math.abs(share - 1 / 3) < 0.02 / 3, `${m} owns ${(100 * share).toFixed(2)}%`)
  }
  // And for members whose ids differ only in a digit, the common case.
  const similar = owners(new Ownership(['10.0.0.1:7848', '10.0.0.2:7848', '10.0.0.3:7848', '10.0.0.4:7848', '10.0.0.5:7848']))
  for (let k = 1; k <= 5; k++) {
    const share = similar.filter((o) => o === `10.0.0.${k}:7848`).length / N
    t.ok(Math.abs(share - 0.2) < 0.02 * 0.2, `member ${k} of 5 owns ${(100 * share).toFixed(2)}%`)
  }
})

t.test('the owner depends on the member set only: not its order, nor duplicates', async (t) => {
  const random = mulberry32(42)
  const sample = ids.slice(0, 2000)
  for (let round = 0; round < 5; round++) {
    const members = shuffle(random, ABCD.slice())
    const o = new Ownership([...members, members[0]!])
    const differs = sample.filter((id) => o.ownerOf(id) !== responsibleNode(id, ABCD))
    t.same(differs, [], `order ${members.join(',')}`)
  }
})

t.test('deterministic: fixed values that every node and version must reproduce', async (t) => {
  // Pinned so that a change to the hash (which would move clients between mixed-version nodes) fails here.
  t.equal(clientHash('10.0.0.1:0#true'), hashString('10.0.0.1:0#true', SEED_A))
  t.same(
    ids.slice(0, 8).map((id) => responsibleNode(id, ABC)),
    three.slice(0, 8),
  )
  const pinned = ['client-1', 'client-2', 'client-3', 'client-4'].map((id) => `${clientHash(id).toString(16)}:${responsibleNode(id, ABC)}`)
  t.same(pinned, ['b9c5d43a:node-c', 'f01facb2:node-a', 'b92e55f2:node-c', '73ad5d18:node-b'])
})

t.test('no members, no owner; one member owns everything', async (t) => {
  t.equal(responsibleNode('x', []), null)
  t.equal(new Ownership(['solo']).ownerOf('anything'), 'solo')
  t.throws(() => new Ownership(['']), /not empty/)
})

t.test('ownershipChanges lists exactly the clients whose owner differs', async (t) => {
  const sample = ids.slice(0, 5000)
  const changes = ownershipChanges(sample, new Ownership(ABC), new Ownership(ABCD))
  const expected = sample.filter((_, i) => three[i] !== four[i])
  t.same(changes.map((c) => c.clientId), expected)
  t.ok(changes.every((c) => c.to === 'node-d' && c.from !== 'node-d'))
  t.same(ownershipChanges(sample, new Ownership(ABC), new Ownership(['node-c', 'node-a', 'node-b'])), [], 'same set, no change')
})
