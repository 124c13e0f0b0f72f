// The Raft driver on a real LevelDB, as a single-member group (standalone): durability before
// acknowledgement, group commit, replay on restart, push-back, compaction.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ManualClock, SystemClock } from '../../../src/core/clock.js'
import { GraceError } from '../../../src/core/errors.js'
import { silentLogger } from '../../../src/core/logger.js'
import type { LogEntry, StateMachine } from '../../../src/cp/log.js'
import { RaftNode, type RaftNodeOptions, type RaftTransport } from '../../../src/cp/node/raft-node.js'
import type { Message } from '../../../src/cp/raft/types.js'
import { HARD_STATE_KEY, entryKey, loadRaftState } from '../../../src/cp/node/raft-storage.js'
import { type BatchOp, type Database, PREFIX, openDatabase, prefixRange } from '../../../src/storage/db.js'

/** A key-value state machine: {type:'kv.put', key, value} and {type:'kv.fail'} (always rejected). */
class KvMachine implements StateMachine {
  readonly data = new Map<string, string>()
  readonly applied: number[] = []
  /** Each applied entry's commandJson. */
  readonly texts: (string | undefined)[] = []
  constructor(private readonly db: Database) {}
  async load(): Promise<void> {
    this.data.clear()
    for await (const [k, v] of this.db.iterator({ gte: 'kv/', lt: 'kv0' })) this.data.set(k.slice(3), v)
  }
  apply(entry: LogEntry, ops: BatchOp[]): unknown {
    const cmd = entry.command as { type: string; key?: string; value?: string }
    if (cmd.type === 'kv.fail') throw new GraceError('CAS_MISMATCH', 'rejected on purpose')
    ops.push({ type: 'put', key: `kv/${cmd.key}`, value: cmd.value! })
    this.data.set(cmd.key!, cmd.value!)
    this.applied.push(entry.index)
    this.texts.push(entry.commandJson)
    return { index: entry.index }
  }
}

/** Counts batches, and synced batches: each is one fsync. */
function countingDb(db: Database): { db: Database; syncs: () => number; batches: () => number } {
  let syncs = 0
  let batches = 0
  const batch = (ops: unknown, options?: { sync?: boolean }) => {
    batches++
    if (options?.sync) syncs++
    return (db.batch as (o: unknown, p?: unknown) => Promise<void>).call(db, ops, options)
  }
  return { db: withBatch(db, batch), syncs: () => syncs, batches: () => batches }
}

/** db with its batch() replaced; a Proxy whose other methods run on the real db (LevelDB classes use private fields). */
function withBatch(db: Database, batch: (ops: unknown, options?: { sync?: boolean }) => Promise<void>): Database {
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'batch') return batch
      const value = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

const put = (key: string, value: string) => ({ type: 'kv.put', key, value }) as never

/** The indexes of the entries the stored log holds, as a restart would load them. */
async function storedIndexes(db: Database): Promise<number[]> {
  return (await loadRaftState(db)).entries.map((e) => e.index)
}

/** Where each stored log segment starts. */
async function segmentStarts(db: Database): Promise<number[]> {
  return (await db.keys(prefixRange(PREFIX.cpLog)).all()).map((k) => Number(k.slice(PREFIX.cpLog.length)))
}

async function setup(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-raft-'))
  let db = await openDatabase(dir)
  const nodes: RaftNode[] = []
  t.teardown(async () => {
    for (const n of nodes) await n.close()
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const open = async (extra: Partial<RaftNodeOptions> = {}, useDb: Database = db) => {
    const sm = new KvMachine(useDb)
    const node = await RaftNode.open({ id: 'n1', db: useDb, stateMachine: sm, clock: new ManualClock(), logger: silentLogger, random: () => 0.5, bootstrap: { voters: ['n1'], learners: [] }, ...extra })
    nodes.push(node)
    return { sm, node }
  }
  const restart = async (node: RaftNode) => {
    await node.close()
    await db.close()
    db = await openDatabase(dir)
    return open()
  }
  /** A crash: storage keeps what was written, the node's memory is gone (it is never closed). */
  const crash = async () => {
    nodes.length = 0
    await db.close()
    db = await openDatabase(dir)
    return open()
  }
  return { db: () => db, open, restart, crash }
}

t.test('a proposal resolves with the result after it is stored, and is applied once', async (t) => {
  const s = await setup(t)
  const { sm, node } = await s.open()
  t.equal(node.status().role, 'leader', 'a group of one leads at once')
  const result = (await node.propose(put('a', '1'))) as { index: number }
  t.ok(result.index >= 2, 'after the no-op of the first term')
  t.ok((await storedIndexes(s.db())).includes(result.index), 'the entry is in the log')
  await node.settled()
  t.equal(await s.db().get('kv/a'), '1', 'the state is stored once settled')
  t.same(sm.applied, [result.index])
  t.match(node.status(), { commitIndex: result.index, appliedIndex: result.index, term: 1 })
  t.match(JSON.parse((await s.db().get(HARD_STATE_KEY))!), { term: 1, vote: 'n1' })
})

t.test("the state machine is given each command's JSON text, as proposed and as replayed", async (t) => {
  const s = await setup(t)
  const { sm, node } = await s.open()
  const commands = [put('a', 'ü "quoted" {braces},"command":'), put('b', '2')]
  for (const c of commands) await node.propose(c)
  t.same(sm.texts, commands.map((c) => JSON.stringify(c)))
  t.same(sm.texts.map((text) => JSON.parse(text!)), commands)
  // A crash before the last applied state was stored: its entries replay from the log, same text.
  const again = await s.crash()
  t.ok(again.sm.texts.length > 0, 'something was replayed')
  t.same(again.sm.texts, sm.texts.slice(-again.sm.texts.length))
})

t.test('group commit: concurrent proposals share fsyncs, and keep their order', async (t) => {
  const s = await setup(t)
  const counted = countingDb(s.db())
  const { sm, node } = await s.open({}, counted.db)
  const before = counted.syncs()
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => node.propose(put(`k${i}`, String(i)))))
  const indexes = results.map((r) => (r as { index: number }).index)
  t.same(indexes, [...indexes].sort((a, b) => a - b), 'in proposal order')
  t.ok(counted.syncs() - before <= 3, `200 proposals took ${counted.syncs() - before} fsyncs`)
  t.equal(sm.data.size, 200)
})

t.test('one write per round: applied state rides with the next log write, or waits for the timer', async (t) => {
  const s = await setup(t)
  const counted = countingDb(s.db())
  const clock = new ManualClock()
  const { node } = await s.open({ clock }, counted.db)
  await node.settled()
  const batches = counted.batches()
  await node.propose(put('a', '1'))
  t.equal(counted.batches() - batches, 1, 'the entry took one write')
  t.equal(await s.db().get('kv/a'), undefined, 'a is applied (the write is answered) but not stored yet')
  await node.propose(put('b', '2'))
  t.equal(counted.batches() - batches, 2, 'the next entry took one write too')
  t.equal(await s.db().get('kv/a'), '1', 'a rode along with the log write of b')
  t.equal(await s.db().get('kv/b'), undefined)
  clock.advance(100)
  await node.settled()
  t.equal(await s.db().get('kv/b'), '2', 'with no log write to ride with, b is written once it has waited')
  t.equal(counted.batches() - batches, 3)
})

t.test('a crash loses no applied write that was not stored yet: replay rebuilds it', async (t) => {
  const s = await setup(t)
  const { node } = await s.open()
  const { index } = (await node.propose(put('a', '1'))) as { index: number }
  t.equal(await s.db().get('kv/a'), undefined, 'applied, not stored')
  const after = await s.crash()
  t.same(Object.fromEntries(after.sm.data), { a: '1' }, 'replayed from the log')
  t.same(after.sm.applied, [index])
  t.equal(await s.db().get('kv/a'), '1', 'and stored before the node serves')
})

t.test('settled() waits for storage to hold what was applied; close stores it too', async (t) => {
  const s = await setup(t)
  const { node } = await s.open()
  await node.propose(put('a', '1'))
  await node.settled()
  t.equal(await s.db().get('kv/a'), '1')
  await node.propose(put('b', '2'))
  const again = await s.restart(node)
  t.equal(await s.db().get('kv/b'), '2', 'close wrote it')
  t.same(again.sm.applied, [], 'nothing to replay')
})

t.test('a rejected command fails alone; the rest of its batch commits', async (t) => {
  const s = await setup(t)
  const { sm, node } = await s.open()
  const [a, b, c] = await Promise.allSettled([node.propose(put('a', '1')), node.propose({ type: 'kv.fail' } as never), node.propose(put('c', '3'))])
  t.equal(a.status, 'fulfilled')
  t.equal(b.status, 'rejected')
  t.equal((b as PromiseRejectedResult).reason.code, 'CAS_MISMATCH')
  t.equal(c.status, 'fulfilled')
  t.same([...sm.data.keys()], ['a', 'c'])
})

t.test('restart: state is loaded, and logged entries not yet applied are replayed', async (t) => {
  const s = await setup(t)
  const first = await s.open()
  await first.node.propose(put('a', '1'))
  const last = first.node.status().lastIndex
  await first.node.close()
  // A crash between the synced log write and the state write leaves two entries unapplied.
  // Written one entry per key as JSON, as stores made before log segments hold them.
  for (const [i, key] of [[1, 'b'], [2, 'c']] as const) {
    const index = last + i
    await s.db().put(entryKey(index), JSON.stringify({ index, term: 1, type: 'normal', data: JSON.stringify({ ts: 0, command: put(key, String(index)) }) }))
  }
  const second = await s.restart(first.node)
  t.same(Object.fromEntries(second.sm.data), { a: '1', b: String(last + 1), c: String(last + 2) })
  t.same(second.sm.applied, [last + 1, last + 2], 'only the unapplied entries are applied')
  const next = (await second.node.propose(put('d', '4'))) as { index: number }
  t.ok(next.index > last + 2, 'new entries follow the replayed ones')
  t.equal(second.node.status().term, 2, 'a new term after the restart')
})

t.test('after close, proposals are refused with UNAVAILABLE and nothing is written', async (t) => {
  const s = await setup(t)
  const { node } = await s.open()
  await node.close()
  await t.rejects(node.propose(put('a', '1')), { code: 'UNAVAILABLE' })
  t.equal(await s.db().get('kv/a'), undefined)
})

t.test('a full queue pushes back with UNAVAILABLE instead of growing', async (t) => {
  const s = await setup(t)
  const { sm, node } = await s.open({ maxPendingProposals: 4 })
  const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => node.propose(put(`k${i}`, 'v'))))
  const refused = results.filter((r) => r.status === 'rejected')
  t.ok(refused.length > 0, 'some proposals were refused')
  for (const r of refused) t.equal((r as PromiseRejectedResult).reason.code, 'UNAVAILABLE')
  t.equal(sm.data.size, results.length - refused.length, 'every accepted proposal was applied')
})

t.test('the log is compacted behind the applied index, and state survives a restart', async (t) => {
  const s = await setup(t)
  const { node } = await s.open({ compactEvery: 100, retainEntries: 50 })
  for (let round = 0; round < 5; round++) {
    await Promise.all(Array.from({ length: 100 }, (_, i) => node.propose(put(`k${i}`, String(round)))))
  }
  const lastIndex = node.status().lastIndex
  const starts = await segmentStarts(s.db())
  t.ok(starts[0]! > 2, `old segments are gone (the first left starts at ${starts[0]})`)
  t.ok(starts.length < 20, `${starts.length} segments left`)
  const stored = await storedIndexes(s.db())
  t.ok(stored[0]! <= lastIndex - 49 && stored[stored.length - 1] === lastIndex, 'the newest 50 behind applied are kept')
  const again = await s.restart(node)
  t.equal(again.sm.data.get('k99'), '4', 'state is intact after compaction and restart')
  t.equal(again.node.status().lastIndex >= lastIndex, true)
})

t.test('reads: the barrier passes at once for a group of one', async (t) => {
  const s = await setup(t)
  const { node } = await s.open()
  await node.propose(put('a', '1'))
  await node.readBarrier()
  t.pass('no round trip needed')
})

/** A transport whose calls fail as scripted: `sent: false` errors first, then an answer. */
function scriptedTransport(failures: { sent: boolean }[]) {
  let deliver: (m: Message) => void = () => {}
  const calls: string[] = []
  const transport: RaftTransport = {
    sendRaft() {},
    onRaft(handler) {
      deliver = handler
    },
    onCall() {},
    onUnreachable() {},
    async call(to, method) {
      calls.push(`${method}@${to}`)
      const failure = failures.shift()
      if (failure) throw Object.assign(new Error(failure.sent ? 'connection lost' : `not connected to ${to}`), { code: 'UNREACHABLE', sent: failure.sent })
      return new TextEncoder().encode(JSON.stringify({ result: { forwarded: true } }))
    },
  }
  // SystemClock's timers do not hold the process open; a server's sockets do, this does here.
  const keepAlive = setInterval(() => {}, 1000)
  // The leader makes itself known to this follower with a heartbeat.
  const heartbeatFrom = (leader: string) => deliver({ type: 'append', from: leader, to: 'n1', term: 3, prevIndex: 0, prevTerm: 0, entries: [], commit: 0 })
  return { transport, calls, heartbeatFrom, stop: () => clearInterval(keepAlive) }
}

/**
 * A leader n1 of {n1, n2, n3} whose peers are played by the test: votes are granted at once,
 * appends are recorded and acknowledged (by n2) only while `ack` is on, or by hand with ackAll.
 */
function followersByHand() {
  let deliver: (m: Message) => void = () => {}
  const appends: Extract<Message, { type: 'append' }>[] = []
  const unanswered: Extract<Message, { type: 'append' }>[] = []
  const state = { ack: true }
  const answer = (m: Extract<Message, { type: 'append' }>) =>
    deliver({ type: 'appendResp', from: m.to, to: m.from, term: m.term, success: true, index: m.prevIndex + m.entries.length, hintIndex: 0, hintTerm: 0 })
  const transport: RaftTransport = {
    sendRaft(to, m) {
      queueMicrotask(() => {
        if (m.type === 'preVote') deliver({ type: 'preVoteResp', from: to, to: m.from, term: m.term, granted: true })
        else if (m.type === 'vote') deliver({ type: 'voteResp', from: to, to: m.from, term: m.term, granted: true })
        else if (m.type === 'heartbeat') deliver({ type: 'heartbeatResp', from: to, to: m.from, term: m.term, context: m.context })
        else if (m.type === 'append' && to === 'n2') {
          appends.push(m)
          if (state.ack) answer(m)
          else unanswered.push(m)
        }
      })
    },
    onRaft(handler) {
      deliver = handler
    },
    onCall() {},
    onUnreachable() {},
    async call() {
      throw new Error('no calls here')
    },
  }
  return { transport, appends, state, ackAll: () => unanswered.splice(0).forEach(answer) }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20))

/** Waits (real time, 5 s at most) until cond holds: a LevelDB write on a busy machine can take a while. */
async function until(cond: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5000; !cond() && Date.now() < deadline; ) await settle()
}

t.test('writes that come in while the last batch is uncommitted wait for it, then go as one batch', async (t) => {
  const { open } = await setup(t)
  const peers = followersByHand()
  const clock = new ManualClock()
  const { node, sm } = await open({ transport: peers.transport, clock, bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] } })
  await settle()
  t.equal(node.status().role, 'leader')
  await node.propose(put('first', '0'))
  peers.state.ack = false
  const sent = peers.appends.length
  const a = node.propose(put('a', '1'))
  await settle()
  t.equal(peers.appends.length, sent + 1, 'a went out at once: nothing was in flight')
  const bc = [node.propose(put('b', '2')), node.propose(put('c', '3'))]
  await settle()
  t.equal(peers.appends.length, sent + 1, 'b and c wait while a is uncommitted')
  // Past the pause that ends a wait for a's writer to write again (the next test): b and c go
  // at a's commit.
  clock.advance(2)
  peers.state.ack = true
  peers.ackAll()
  await a
  await Promise.all(bc)
  const batch = peers.appends.slice(sent + 1).find((m) => m.entries.length > 0)!
  t.equal(batch.entries.length, 2, 'b and c went in one append, once a committed')
  t.same([...sm.data.keys()], ['first', 'a', 'b', 'c'])
})

/** Synced batches wait while `held` is on (an fsync that takes its time), until release(). */
function gatedDb(db: Database) {
  const state = { held: false, waiting: 0 }
  let open: () => void = () => {}
  let gate = Promise.resolve()
  const batch = async (ops: unknown, options?: { sync?: boolean }) => {
    if (options?.sync && state.held) {
      state.waiting++
      await gate
      state.waiting--
    }
    return (db.batch as (o: unknown, p?: unknown) => Promise<void>).call(db, ops, options)
  }
  const wrapped = withBatch(db, batch)
  const hold = () => {
    state.held = true
    gate = new Promise((resolve) => (open = resolve))
  }
  const release = () => {
    state.held = false
    open()
  }
  return { db: wrapped, state, hold, release }
}

t.test('a leader answers a committed write while its own write of the next batch is in flight', async (t) => {
  const s = await setup(t)
  const peers = followersByHand()
  const gated = gatedDb(s.db())
  const clock = new ManualClock()
  const { node, sm } = await s.open({ transport: peers.transport, clock, bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] } }, gated.db)
  await settle()
  t.equal(node.status().role, 'leader')
  await node.propose(put('first', '0'))
  peers.state.ack = false
  const a = node.propose(put('a', '1'))
  await settle()
  const b = node.propose(put('b', '2'))
  await settle()
  // n2's acknowledgement commits a; b, past the pause that ends a wait for a's writer to write
  // again, then goes as the next batch, and the leader's fsync of it hangs.
  clock.advance(2)
  gated.hold()
  peers.ackAll()
  const answered = await Promise.race([a.then(() => 'a answered'), new Promise((r) => setTimeout(() => r('a not answered'), 1000))])
  t.equal(answered, 'a answered', 'a is answered at its commit')
  t.equal(gated.state.waiting, 1, "while the leader's write of b is still waiting on its fsync")
  t.same([...sm.data.keys()], ['first', 'a'])
  gated.release()
  peers.state.ack = true
  peers.ackAll()
  await b
  t.same([...sm.data.keys()], ['first', 'a', 'b'])
  await node.settled()
  t.equal(await s.db().get('kv/b'), '2', 'b and its state are stored')
})

/**
 * A leader of three whose followers ack by hand, after one write: write a, whose round takes
 * 5 ms, then b while a is uncommitted; a commits and b waits at a's commit for a's writer.
 */
async function heldAtCommit(t: Test) {
  const { open } = await setup(t)
  const peers = followersByHand()
  const clock = new ManualClock()
  const { node, sm } = await open({ transport: peers.transport, clock, bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] } })
  await settle()
  await node.propose(put('first', '0'))
  const carrying = () => peers.appends.filter((m) => m.entries.length > 0)
  const sent = carrying().length
  peers.state.ack = false
  const a = node.propose(put('a', '1'))
  await settle()
  // a's round takes 5 ms: the longest its commit may make writes wait for its writer.
  clock.advance(5)
  const b = node.propose(put('b', '2'))
  await settle()
  peers.ackAll()
  await a
  await settle()
  t.equal(carrying().length, sent + 1, "b waits at a's commit for a's writer to write again")
  /** How many writes each round after a's carried. */
  const roundsAfterA = () => carrying().slice(sent + 1).map((m) => m.entries.length)
  return { node, sm, peers, clock, carrying, sent, b, roundsAfterA }
}

t.test("the writers a commit answers go in one round with the writes that waited for it", async (t) => {
  const { node, sm, peers, clock, carrying, sent, b, roundsAfterA } = await heldAtCommit(t)
  // a's writer writes again, as a client registering one thing after another does.
  const c = node.propose(put('c', '3'))
  await settle()
  t.same(roundsAfterA(), [2], 'b and c go in one round')
  clock.advance(5)
  peers.ackAll()
  await Promise.all([b, c])
  t.same([...sm.data.keys()], ['first', 'a', 'b', 'c'])
  // A pause in writes ends the wait: d waits for the writers of b and c, who do not write again.
  const d = node.propose(put('d', '4'))
  await settle()
  t.equal(carrying().length, sent + 2, 'd waits for the writers of b and c')
  clock.advance(2)
  await settle()
  t.equal(carrying().length, sent + 3, 'then goes alone, once no write came in for 2 ms')
  // So does a round's time: e, held while d is uncommitted, then waits for d's writer no longer
  // than d took to commit (1 ms).
  const e = node.propose(put('e', '5'))
  await settle()
  clock.advance(1)
  peers.ackAll()
  await d
  await settle()
  t.equal(carrying().length, sent + 3, "e waits at d's commit")
  clock.advance(1)
  await settle()
  t.equal(carrying().length, sent + 4, 'then goes after 1 ms')
  peers.state.ack = true
  peers.ackAll()
  await e
})

t.test('a wait that ends on its timer lets in the writes read in the same turn of the event loop', async (t) => {
  const { node, sm, peers, clock, b, roundsAfterA } = await heldAtCommit(t)
  // The pause that ends the wait passes while the leader is busy elsewhere: its timer runs
  // first, then the loop reads c, which came in meanwhile (here: in the same synchronous turn).
  clock.advance(2)
  const c = node.propose(put('c', '3'))
  await settle()
  t.same(roundsAfterA(), [2], 'b and c go in one round, not b alone at the timer')
  peers.state.ack = true
  peers.ackAll()
  await Promise.all([b, c])
  t.same([...sm.data.keys()], ['first', 'a', 'b', 'c'])
})

t.test('a held write goes on its own once the last batch has waited long enough', async (t) => {
  const { open } = await setup(t)
  const peers = followersByHand()
  const clock = new ManualClock()
  const { node } = await open({ transport: peers.transport, clock, bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] } })
  await settle()
  await node.propose(put('first', '0'))
  peers.state.ack = false
  const carrying = () => peers.appends.filter((m) => m.entries.length > 0).length
  const sent = carrying()
  void node.propose(put('a', '1')).catch(() => {})
  await settle()
  void node.propose(put('b', '2')).catch(() => {})
  await settle()
  t.equal(carrying(), sent + 1, 'b is held')
  clock.advance(100)
  await until(() => carrying() === sent + 2)
  t.equal(carrying(), sent + 2, 'then sent without waiting for a any longer')
})

t.test('a follower sends a forwarded write again while its link to the leader is still being set up', async (t) => {
  const { open } = await setup(t)
  const script = scriptedTransport([{ sent: false }, { sent: false }])
  t.teardown(script.stop)
  const { node } = await open({ transport: script.transport, clock: new SystemClock(), bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] } })
  script.heartbeatFrom('n2')
  t.same(await node.propose(put('a', '1')), { forwarded: true })
  t.same(script.calls, ['raft.propose@n2', 'raft.propose@n2', 'raft.propose@n2'], 'two refusals before it left, then sent')
})

t.test('a forwarded write that may have reached the leader is never sent twice', async (t) => {
  const { open } = await setup(t)
  const script = scriptedTransport([{ sent: true }])
  t.teardown(script.stop)
  const { node } = await open({ transport: script.transport, clock: new SystemClock(), bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] } })
  script.heartbeatFrom('n2')
  await t.rejects(node.propose(put('a', '1')), { code: 'UNAVAILABLE' })
  t.same(script.calls, ['raft.propose@n2'])
})

t.test('a forwarded write that cannot leave fails within the request timeout', async (t) => {
  const { open } = await setup(t)
  const script = scriptedTransport(Array.from({ length: 1000 }, () => ({ sent: false })))
  t.teardown(script.stop)
  const { node } = await open({ transport: script.transport, clock: new SystemClock(), requestTimeoutMs: 300, bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] } })
  script.heartbeatFrom('n2')
  const started = Date.now()
  await t.rejects(node.propose(put('a', '1')), { code: 'UNAVAILABLE' })
  t.ok(Date.now() - started < 1000, `gave up after ${Date.now() - started} ms`)
  t.ok(script.calls.length >= 3 && script.calls.length <= 8, `${script.calls.length} attempts, backing off`)
})
