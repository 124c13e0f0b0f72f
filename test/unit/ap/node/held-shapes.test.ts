// What a client's record costs the heap of every node that holds it: each node keeps every
// ephemeral client, each young-generation collection copies the new ones, and a registration
// benchmark's scavenges were tens of milliseconds. Checked in a child process with V8's natives
// syntax (%DebugPrint), since JavaScript cannot see a list's spare room, a number kept in a
// separate heap number, a cons string or which of two equal strings an object holds:
// - a record's instance list is exactly as long as it is (a list grown by push or built by a
//   spread keeps room for 17: 136 bytes more), as synced, as registered and as expired;
// - a synced instance's whole weight is a small integer, and a record's floor of 0 is kept as
//   none (a float or a field of floats costs a 16-byte heap number per client);
// - instances share their names and empty metadata (one string or object for all of them, not
//   a copy per message or request);
// - a registration's default client id and a view's key are flat strings (a cons string kept as
//   a map key is kept along with its flattened copy).

import t from 'tap'
import { runWithNatives } from '../../../helpers/natives.js'

const SRC = new URL('../../../../src/', import.meta.url).href

const SCRIPT = `
  const src = ${JSON.stringify(SRC)}
  const { encodeItemsMessage, decodeItemsMessage } = await import(src + 'ap/node/distro-messages.js')
  const { MemoryEphemeralStore } = await import(src + 'ap/node/memory-store.js')
  const { ManualClock } = await import(src + 'core/clock.js')
  const { ConsistencyProxy } = await import(src + 'consistency/proxy.js')
  const { ClientLeases, expire } = await import(src + 'naming/leases.js')
  const { NamingService } = await import(src + 'naming/service.js')
  const { NamingView } = await import(src + 'naming/view.js')
  const { parseInstance } = await import(src + 'naming/validate.js')
  // Natives syntax is for scripts, not modules: a function made from a string is one.
  const print = new Function('label', 'x', '%DebugPrint(label); %DebugPrint(x)')
  const instance = (k) => ({ namespace: 'public', group: 'DEFAULT_GROUP', service: 'svc', cluster: 'DEFAULT', ip: '10.0.0.' + k, port: 9000, weight: 2, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId: 'c' + k })
  // Each in a message of its own, as two syncs bring them.
  const synced = (k) => decodeItemsMessage(encodeItemsMessage([{ clientId: 'c' + k, version: 2 ** 50 + k, instances: [instance(k)] }]))[0]
  const a = synced(1)
  const b = synced(2)
  print('synced.instances', a.instances)
  print('synced.instance', a.instances[0])
  print('synced.record', a)
  print('synced.names', [a.instances[0].service, b.instances[0].service])
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const view = new NamingView(1)
  store.subscribe((id, prev, next) => view.applyClientChange(id, prev?.instances ?? [], next?.instances ?? []))
  const naming = new NamingService(new ConsistencyProxy({}, store), view, new ClientLeases(store, clock), clock)
  // As the HTTP route reads a body; the service's name made at run time, as a request's is.
  const service = ['orders', 'service', 'east'].join('-')
  for (const k of [1, 2]) naming.registerNow(parseInstance(JSON.parse(JSON.stringify({ service, ip: '10.1.0.' + k, port: 20000 + k }))))
  const r1 = store.get('10.1.0.1:20001')
  const r2 = store.get('10.1.0.2:20002')
  print('registered.instances', r1.instances)
  print('registered.clientId', r1.clientId)
  print('registered.names', [r1.instances[0].service, r2.instances[0].service])
  print('registered.metadata', [r1.instances[0].metadata, r2.instances[0].metadata])
  print('view.key', [...view.get(r1.instances[0]).ephemeral.keys()][0])
  print('expired.instances', expire(r1, 20_000).instances)
`

/** What %DebugPrint said of each labelled value, by label. */
function printed(): Map<string, string> {
  const text = runWithNatives(SCRIPT)
  const byLabel = new Map<string, string>()
  const parts = text.split(/^DebugPrint: 0x[0-9a-f]+: \[String\] in \w+: #([\w.]+)\n/m)
  for (let i = 1; i + 1 < parts.length; i += 2) byLabel.set(parts[i]!, parts[i + 1]!)
  return byLabel
}

/** The capacity of a printed array's elements. */
function capacity(print: string | undefined): number | undefined {
  const m = /- elements: 0x[0-9a-f]+ <FixedArray\[(\d+)\]>/.exec(print ?? '')
  return m ? Number(m[1]) : undefined
}

/** Whether a printed two-element array holds one object twice (V8 prints "0-1:" for a run of the same value). */
function oneObjectTwice(print: string | undefined): boolean {
  return /^\s+0-1: 0x[0-9a-f]+ /m.test(print ?? '')
}

t.test('a client record keeps no spare room, no heap numbers it can do without, no copies of shared names', async (t) => {
  const p = printed()
  t.equal(capacity(p.get('synced.instances')), 1, 'a synced record of one instance: a list of room 1')
  t.equal(capacity(p.get('registered.instances')), 1, 'a registered one: room 1')
  t.equal(capacity(p.get('expired.instances')), 1, 'one marked unhealthy by a missed beat: room 1')
  t.match(p.get('synced.instance'), /#weight: 2 \(/, 'a synced whole weight is a small integer, not a heap number')
  t.match(p.get('synced.record'), /#floor: 0x[0-9a-f]+ <undefined>/, 'a floor of 0 is kept as none')
  t.ok(oneObjectTwice(p.get('synced.names')), 'two syncs\' instances of one service hold one string for its name')
  t.ok(oneObjectTwice(p.get('registered.names')), 'two registrations of one service hold one string for its name')
  t.ok(oneObjectTwice(p.get('registered.metadata')), 'instances registered without metadata share one empty object')
  t.match(p.get('registered.clientId'), /^DebugPrint: 0x[0-9a-f]+: \[String\]: "/m, 'the default client id is a flat string (a cons prints as c"…")')
  t.match(p.get('view.key'), /^DebugPrint: 0x[0-9a-f]+: \[String\]: "/m, 'the view keeps its key as a flat string')
})
