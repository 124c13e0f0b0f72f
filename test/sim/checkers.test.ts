// The simulator's checkers, tested the way a test suite is: by breaking the thing under test on
// purpose (mutation testing) and expecting a failure. A simulator whose checkers never fire is
// worse than none, since it passes whatever the core does.

import t from 'tap'
import { RaftLog } from '../../src/cp/raft/log.js'
import { Raft } from '../../src/cp/raft/raft.js'
import { InvariantChecker, SafetyViolation } from './checkers.js'
import { SimFailure, type SimOptions, runSimulation } from './cluster.js'

/** The first seed in [1, seeds] whose run fails, and why; null if none does. */
function firstFailure(profile: string, seeds: number, opts: { mutant?: SimOptions['mutant']; raft?: SimOptions['raft'] } = {}): SimFailure | null {
  for (let seed = 1; seed <= seeds; seed++) {
    try {
      runSimulation(seed, profile, { ...opts, traceKeep: 0 })
    } catch (err) {
      if (err instanceof SimFailure) return err
      throw err
    }
  }
  return null
}

/** Replaces a method for the duration of fn. */
function patched<T extends object, R>(target: T, key: string, replacement: unknown, fn: () => R): R {
  const record = target as Record<string, unknown>
  const original = record[key]
  record[key] = replacement
  try {
    return fn()
  } finally {
    record[key] = original
  }
}

t.test('a core that votes for any log (no 5.4.1 check) breaks Leader Completeness', async (t) => {
  const f = patched(RaftLog.prototype, 'isUpToDate', () => true, () => firstFailure('crashes', 60))
  t.ok(f, 'caught')
  t.match(f?.reason ?? '', /^safety: /, f?.message ?? '')
})

t.test('a core that answers reads without a quorum round (thesis 6.4) serves stale reads', async (t) => {
  const readAtOnce = function (this: Raft, id: number): void {
    const self = this as unknown as { checkLeader(): void; readStates: { id: number; index: number }[]; log: RaftLog }
    self.checkLeader()
    self.readStates.push({ id, index: self.log.committed })
  }
  // Without CheckQuorum, a partitioned leader goes on leading, so stale reads come soon.
  const f = patched(Raft.prototype, 'readIndex', readAtOnce, () => firstFailure('partitions', 150, { raft: { checkQuorum: false } }))
  t.ok(f, 'caught')
  t.match(f?.reason ?? '', /not linearizable/, f?.message ?? '')
})

t.test('a driver that does not persist votes is caught', async (t) => {
  const f = firstFailure('clean', 5, { mutant: 'forgetVote' })
  t.ok(f, 'caught')
  t.match(f?.reason ?? '', /granted its vote .* before persisting it/, f?.message ?? '')
})

t.test('a driver that acknowledges entries before they are on disk loses committed entries', async (t) => {
  // The check on sends is off for this mutant: what is left to notice is the damage after crashes.
  const f = firstFailure('crashes', 150, { mutant: 'ackEarly' })
  t.ok(f, 'caught')
  t.match(f?.reason ?? '', /^safety: /, f?.message ?? '')
})

t.test('the checker on its own', async (t) => {
  const c = new InvariantChecker(() => 'test')
  c.onPersist('n1', { term: 1, vote: null, commit: 0 }, { term: 1, vote: 'n2', commit: 0 })
  t.throws(() => c.onPersist('n1', { term: 1, vote: 'n2', commit: 0 }, { term: 1, vote: 'n3', commit: 0 }), SafetyViolation, 'a second vote in a term')
  t.throws(() => c.onPersist('n1', { term: 2, vote: null, commit: 5 }, { term: 1, vote: null, commit: 5 }), SafetyViolation, 'a term going back')
  t.throws(() => c.onPersist('n1', { term: 2, vote: null, commit: 5 }, { term: 2, vote: null, commit: 4 }), SafetyViolation, 'a commit index going back')

  const e = (index: number, term: number, data: string) => ({ index, term, type: 'normal' as const, data })
  c.onApply('n1', e(1, 1, 'a'), 'x=1')
  c.onApply('n2', e(1, 1, 'a'), 'x=1')
  t.throws(() => c.onApply('n3', e(1, 2, 'b'), 'x=2'), /State Machine Safety/, 'another entry applied at an index')
  t.throws(() => c.onApply('n3', e(1, 1, 'a'), 'x=9'), /diverge/, 'the same entry, another state')

  t.throws(
    () => c.onSend({ type: 'appendResp', from: 'n2', to: 'n1', term: 1, success: true, index: 7, hintIndex: 0, hintTerm: 0 }, { hardState: { term: 1, vote: null, commit: 0 }, snapshotIndex: 0, lastIndex: 5 }),
    /acknowledged entries through 7/,
    'an acknowledgement ahead of the disk',
  )
  t.doesNotThrow(
    () => c.onSend({ type: 'voteResp', from: 'n2', to: 'n1', term: 3, granted: true }, { hardState: { term: 4, vote: 'n3', commit: 0 }, snapshotIndex: 0, lastIndex: 5 }),
    'a vote for an earlier term, once the disk is in a later one',
  )
})
