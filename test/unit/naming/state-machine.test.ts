// The naming state machine's registrations: the instance's stored JSON is sliced from the
// command's JSON text when the log has it (LogEntry.commandJson), and written by JSON.stringify
// otherwise; load() after a restart rebuilds the same view either way.

import t from 'tap'
import type { CpCommand, LogEntry } from '../../../src/cp/log.js'
import type { Instance } from '../../../src/naming/model.js'
import { NamingStateMachine } from '../../../src/naming/state-machine.js'
import { parseInstance } from '../../../src/naming/validate.js'
import { NamingView } from '../../../src/naming/view.js'
import { type BatchOp, PREFIX, writeBatch } from '../../../src/storage/db.js'
import { tempDb } from '../../helpers/config-store.js'

const T0 = 1_700_000_000_000

function instance(ip: string, port = 8080): Instance {
  return parseInstance({ service: 'orders', ip, port, ephemeral: false, metadata: { zone: 'a "b" ü' } })
}

function put(index: number, command: object, commandJson?: string): LogEntry {
  return { index, ts: T0 + index, command: command as CpCommand, commandJson }
}

/** The values apply stored, by key. */
function values(ops: BatchOp[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const op of ops) if (op.type === 'put' && op.key.startsWith(PREFIX.namingInstance)) out.set(op.key, op.value)
  return out
}

t.test("a registration stores the instance's text from the command's JSON, not a second serialization", async (t) => {
  const tdb = await tempDb(t)
  const sm = new NamingStateMachine(tdb.db, new NamingView(0))
  const registered = instance('10.0.0.1')
  const command = { type: 'naming.instance.put', instance: registered }
  const exact = JSON.stringify(command)
  // The same command with insignificant white space in its text: what is stored is the slice.
  const spaced = exact.replace('"ip":', '"ip" : ')
  t.not(spaced, exact)
  const ops: BatchOp[] = []
  t.same(sm.apply(put(1, command, spaced), ops), { ok: true })
  const stored = [...values(ops).values()]
  t.equal(stored.length, 1)
  t.equal(stored[0], JSON.stringify(registered).replace('"ip":', '"ip" : '))
  t.same(JSON.parse(stored[0]!), registered)

  // From the text the Raft driver gives (JSON.stringify's), the bytes are JSON.stringify's.
  const second = instance('10.0.0.2')
  const ops2: BatchOp[] = []
  sm.apply(put(2, { type: 'naming.instance.put', instance: second }, JSON.stringify({ type: 'naming.instance.put', instance: second })), ops2)
  t.same([...values(ops2).values()], [JSON.stringify(second)])

  // A restart loads what was stored into the same view.
  await writeBatch(tdb.db, [...ops, ...ops2], true)
  const view = new NamingView(0)
  await new NamingStateMachine(tdb.db, view).load()
  const loaded = [...(view.get(registered)?.persistent.values() ?? [])].sort((a, b) => (a.ip < b.ip ? -1 : 1))
  t.same(loaded, [registered, second])
})

t.test('without the text, or from a command of another shape, the instance is serialized', async (t) => {
  const tdb = await tempDb(t)
  const sm = new NamingStateMachine(tdb.db, new NamingView(0))
  const a = instance('10.0.0.1')
  const ops: BatchOp[] = []
  sm.apply(put(1, { type: 'naming.instance.put', instance: a }), ops)
  t.same([...values(ops).values()], [JSON.stringify(a)], 'no commandJson')

  // A field after the instance: its text is not the instance followed by the closing brace.
  const b = instance('10.0.0.2')
  const odd = { type: 'naming.instance.put', instance: b, note: 'x' }
  const ops2: BatchOp[] = []
  sm.apply(put(2, odd, JSON.stringify(odd)), ops2)
  t.same([...values(ops2).values()], [JSON.stringify(b)], 'another shape')
})

t.test('a registration in a probed cluster keeps the probed health, and stores that record', async (t) => {
  const tdb = await tempDb(t)
  const sm = new NamingStateMachine(tdb.db, new NamingView(0))
  const a = instance('10.0.0.1')
  const cmd = { type: 'naming.instance.put', instance: a }
  sm.apply(put(1, cmd, JSON.stringify(cmd)), [])
  const ref = { namespace: a.namespace, group: a.group, service: a.service, cluster: a.cluster }
  const check = { type: 'tcp', intervalMs: 5000, timeoutMs: 2000, port: 0 }
  sm.apply(put(2, { type: 'naming.cluster.put', ref, healthCheck: check }), [])
  const health = { type: 'naming.instance.health', ref: { ...ref, ip: a.ip, port: a.port }, healthy: false, source: 'probe' }
  sm.apply(put(3, health), [])
  // Registered again as healthy: the probes' verdict stays, in memory and in what is stored.
  const ops: BatchOp[] = []
  sm.apply(put(4, cmd, JSON.stringify(cmd)), ops)
  const stored = [...values(ops).values()]
  t.equal(stored.length, 1)
  t.same(JSON.parse(stored[0]!), { ...a, healthy: false })
  t.equal(stored[0], JSON.stringify({ ...a, healthy: false }))
})
