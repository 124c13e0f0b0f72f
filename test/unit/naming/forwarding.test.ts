// Ephemeral changes go to the node responsible for the client (Distro's owner): a node that is
// not responsible forwards the change once, the owner applies it and answers, and errors come
// back as the owner raised them. Two naming services, each with its own store and view, joined
// by a fake forwarder that routes clients by a fixed owner rule.

import t from 'tap'
import { MemoryEphemeralStore } from '../../../src/ap/node/memory-store.js'
import { ManualClock } from '../../../src/core/clock.js'
import { ConsistencyProxy } from '../../../src/consistency/proxy.js'
import type { ReplicatedLog } from '../../../src/cp/log.js'
import { ClientLeases } from '../../../src/naming/leases.js'
import type { Instance } from '../../../src/naming/model.js'
import { type EphemeralOp, NamingService } from '../../../src/naming/service.js'
import { NamingView } from '../../../src/naming/view.js'
import { parseEphemeralOp } from '../../../src/naming/validate.js'

const noLog = {} as ReplicatedLog // ephemeral changes never touch the CP log

function instance(ip: string, port: number, clientId: string): Instance {
  return { namespace: 'public', group: 'DEFAULT_GROUP', service: 'orders', cluster: 'DEFAULT', ip, port, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId }
}

/** Node "a" owns clients whose id starts with "a-", node "b" every other client. */
function pair() {
  const clock = new ManualClock()
  const sent: { from: string; to: string; op: EphemeralOp }[] = []
  const nodes = new Map<string, { naming: NamingService; store: MemoryEphemeralStore; view: NamingView; leases: ClientLeases }>()
  for (const self of ['a', 'b']) {
    const store = new MemoryEphemeralStore()
    const view = new NamingView(1)
    store.subscribe((clientId, prev, next) => view.applyClientChange(clientId, prev?.instances ?? [], next?.instances ?? []))
    const owners = {
      forwardTarget: (clientId: string) => {
        const owner = clientId.startsWith('a-') ? 'a' : 'b'
        return owner === self ? null : owner
      },
      forward: async (to: string, op: EphemeralOp) => {
        sent.push({ from: self, to, op })
        // Through JSON, as over the peer transport.
        return nodes.get(to)!.naming.executeForwarded(parseEphemeralOp(JSON.parse(JSON.stringify(op))))
      },
    }
    const leases = new ClientLeases(store, clock)
    const naming = new NamingService(new ConsistencyProxy(noLog, store), view, leases, clock, owners)
    nodes.set(self, { naming, store, view, leases })
  }
  return { a: nodes.get('a')!, b: nodes.get('b')!, sent }
}

t.test('a change of a client owned elsewhere is forwarded once and applied by the owner', async (t) => {
  const { a, b, sent } = pair()
  t.equal(await a.naming.registerNow(instance('10.0.0.1', 80, 'b-1')), undefined)
  t.equal(sent.length, 1)
  t.same(sent[0]!.to, 'b')
  t.ok(b.store.get('b-1'), 'stored at the owner')
  t.notOk(a.store.get('b-1'), 'not stored where it arrived')

  // Registered here, owned here: nothing crosses.
  t.equal(a.naming.registerNow(instance('10.0.0.2', 80, 'a-1')), undefined, 'answered at once, without a promise')
  t.equal(sent.length, 1)

  // A beat is answered by the owner, from the owner's state.
  t.same(await a.naming.beat({ clientId: 'b-1' }), { clientBeatInterval: 5000, registered: true })
  t.same(await a.naming.beat({ clientId: 'b-unknown' }), { clientBeatInterval: 5000, registered: false })
  t.same(b.naming.beat({ clientId: 'b-1' }), { clientBeatInterval: 5000, registered: true }, 'at the owner: a plain answer')
  t.equal(sent.filter((s) => s.from === 'b').length, 0, 'the owner never forwards')
  t.same([...a.leases.silences(['b-1', 'a-1'])], [['b-1', 0], ['a-1', 0]], 'a node tells of the clients it forwarded for as well as of its own')
})

t.test("the owner's errors come back to the caller", async (t) => {
  const { a, b } = pair()
  // At the owner the service is persistent; the node that forwards does not know it.
  b.view.putInstance({ ...instance('10.0.0.5', 5432, ''), ephemeral: false })
  await t.rejects(a.naming.registerNow(instance('10.0.0.1', 80, 'b-1'))!, { code: 'SERVICE_KIND_CONFLICT' })
  t.notOk(b.store.get('b-1'), 'nothing stored')
})

t.test('an address that moves to a client owned elsewhere is removed from its old client by that owner only', async (t) => {
  const { a, b, sent } = pair()
  // The address first belongs to client b-1 (owned by b), then registers as a-1 (owned by a).
  await b.naming.registerNow(instance('10.0.0.9', 80, 'b-1'))
  await b.naming.registerNow(instance('10.0.0.10', 80, 'b-1'))
  // Node a sees b-1's instances as Distro would have synced them.
  a.store.put(b.store.get('b-1')!)
  a.naming.registerNow(instance('10.0.0.9', 80, 'a-1'))
  await new Promise((r) => setImmediate(r))
  const moved = sent.find((s) => s.op.op === 'deregister')
  t.ok(moved, 'the old owner was told')
  t.same(moved && moved.op.op === 'deregister' ? moved.op.clientId : undefined, 'b-1')
  t.same(b.store.get('b-1')!.instances.map((i) => i.ip), ['10.0.0.10'], 'only that address left its old client')
  t.same(a.store.get('a-1')!.instances.map((i) => i.ip), ['10.0.0.9'], 'and it stays with its new client')
})

t.test('a forwarded change is checked like a request: malformed ones are refused and change nothing', async (t) => {
  const { b } = pair()
  const good = instance('10.0.0.1', 80, 'b-1')
  const bad: [unknown, string][] = [
    [null, 'INVALID_ARGUMENT'],
    [{ op: 'explode' }, 'INVALID_ARGUMENT'],
    [{ op: 'register' }, 'INVALID_ARGUMENT'],
    [{ op: 'register', instance: { ...good, ip: '999.1.1.1' } }, 'INVALID_IP'],
    [{ op: 'register', instance: { ...good, port: 0 } }, 'INVALID_PORT'],
    [{ op: 'register', instance: { ...good, ephemeral: false } }, 'INVALID_ARGUMENT'],
    [{ op: 'register', instance: { ...good, metadata: { a: 1 } } }, 'INVALID_METADATA'],
    [{ op: 'deregister', ref: { service: 'orders', ip: '10.0.0.1' } }, 'INVALID_PORT'],
    [{ op: 'deregister', ref: { service: 'orders', ip: '10.0.0.1', port: 80 }, clientId: '' }, 'INVALID_NAME'],
    [{ op: 'update', ref: { service: 'orders', ip: '10.0.0.1', port: 80 }, patch: {} }, 'INVALID_ARGUMENT'],
    [{ op: 'beat', request: {} }, 'INVALID_ARGUMENT'],
  ]
  for (const [op, code] of bad) t.throws(() => parseEphemeralOp(op), { code }, JSON.stringify(op))
  t.equal(b.store.size(), 0, 'nothing stored')
  t.same(parseEphemeralOp(JSON.parse(JSON.stringify({ op: 'register', instance: good }))), { op: 'register', instance: good }, 'a good change passes unchanged')
  t.same(parseEphemeralOp({ op: 'beat', request: { clientId: 'b-1' } }), { op: 'beat', request: { clientId: 'b-1' } })
})
