// `node dist/test/bench/ap-micro.js [--instances N] [--reps N] [--only load|expiry|write|sweep]`
//
// In-process CPU measures of the AP layer's hot paths, steady on a busy machine where the
// wall-clock benchmark (ap-bench.ts) is not: process CPU time (user + system) per operation,
// median of several repetitions, everything in one process over an in-memory transport that
// copies every payload, as a socket would.
//
// - load: a node holding N clients (one instance each, 4 services, the metadata of the bench's
//   load phase) hands a full copy to a starting node wired as createGraceNode wires it (the
//   naming view and its push log subscribed, batches applied through view.batch). CPU of both
//   sides together, and the wall time.
// - write: a local registration on its owner in a 3-node group, with the sync batches it makes
//   applied on the two peers (each peer with a naming view), one write per coalescing window
//   (the 1-connection case) and many per window (the loaded case). CPU per write, all three
//   nodes together.
// - sweep: one lease sweep over 20,000 owned clients, silent (expiry paused) or beating.

import { parseArgs } from 'node:util'
import type { ClientRecord } from '../../src/ap/store.js'
import { DistroNode, SYNC_INTERVAL_MS } from '../../src/ap/node/distro-node.js'
import { ManualClock, SystemClock, type Clock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'
import { ClientLeases } from '../../src/naming/leases.js'
import { BEAT_METADATA, type Instance } from '../../src/naming/model.js'
import { SELF_PRESERVATION_DEFAULTS } from '../../src/naming/self-preservation.js'
import { NamingPush } from '../../src/naming/push.js'
import { NamingView } from '../../src/naming/view.js'
import { MemoryNet } from './memory-net.js'

const { values: opts } = parseArgs({
  options: {
    instances: { type: 'string', default: '100000' },
    reps: { type: 'string', default: '5' },
    only: { type: 'string' },
  },
})
const N = Number(opts.instances)
const REPS = Number(opts.reps)

function instance(k: number): Instance {
  const ip = `10.0.${(k >> 8) & 255}.${k & 255}`
  const port = 20_000 + (k >> 16)
  return {
    namespace: 'public',
    group: 'DEFAULT_GROUP',
    service: `bench-load-${k % 4}`,
    cluster: 'DEFAULT',
    ip,
    port,
    weight: 1,
    enabled: true,
    healthy: true,
    ephemeral: true,
    metadata: { [BEAT_METADATA.unhealthyAfterMs]: '3600000', [BEAT_METADATA.removeAfterMs]: '3600000' },
    clientId: `${ip}:${port}`,
  }
}

function cpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

function node(net: MemoryNet, self: string, members: string[], clock: Clock): { node: DistroNode; view: NamingView } {
  const n = new DistroNode({ self, transport: net.transport(self), clock, random: Math.random, logger: silentLogger, members })
  const view = new NamingView(clock.now() * 1000, () => clock.now())
  new NamingPush(view, { clock })
  n.subscribe((clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined) => view.applyClientChange(clientId, prev?.instances ?? [], next?.instances ?? []))
  n.setBulkApply((apply) => view.batch(apply))
  return { node: n, view }
}

async function benchLoad(): Promise<void> {
  const clock = new SystemClock()
  const net = new MemoryNet()
  const src = node(net, 'a', ['a'], clock).node
  src.start()
  for (let k = 0; k < N; k++) {
    const i = instance(k)
    src.put({ clientId: i.clientId, version: 0, instances: [i] })
  }
  const cpu: number[] = []
  const wall: number[] = []
  for (let r = 0; r < REPS; r++) {
    const dst = node(net, `b${r}`, ['a'], clock)
    globalThis.gc?.()
    const c0 = cpuMs()
    const t0 = performance.now()
    const ok = await dst.node.load()
    wall.push(performance.now() - t0)
    cpu.push(cpuMs() - c0)
    if (!ok || dst.node.size() !== N) throw new Error(`load got ${dst.node.size()} of ${N}`)
    dst.node.stop()
    console.log(`load rep ${r}: ${cpu[r]!.toFixed(0)} ms CPU, ${wall[r]!.toFixed(0)} ms wall`)
  }
  console.log(`load of ${N}: median ${median(cpu).toFixed(0)} ms CPU (${((median(cpu) * 1000) / N).toFixed(1)} µs/record), ${median(wall).toFixed(0)} ms wall`)
  src.stop()
}

/**
 * Writes on the owner of a 3-node group, their syncs applied by two peers. `perWindow` writes go
 * into each coalescing window before the clock moves past it.
 */
async function benchWrite(perWindow: number, writes: number): Promise<number> {
  const clock = new ManualClock(Date.now())
  const net = new MemoryNet()
  const ids = ['a', 'b', 'c']
  const nodes = ids.map((id) => node(net, id, ids, clock).node)
  for (const n of nodes) n.start()
  const owner = nodes[0]!
  let k = 0
  const round = async (count: number): Promise<void> => {
    for (let done = 0; done < count; ) {
      for (let j = 0; j < perWindow && done < count; j++, done++) {
        const i = instance(k++)
        owner.put({ clientId: i.clientId, version: 0, instances: [i] })
      }
      // One round of sync batches per window: the driver sends at most one per SYNC_INTERVAL_MS.
      clock.advance(SYNC_INTERVAL_MS)
      // Let the sync calls and their answers go round.
      for (let s = 0; s < 6; s++) await new Promise((r) => setImmediate(r))
    }
  }
  await round(Math.min(writes, 2000)) // warm up
  const c0 = cpuMs()
  await round(writes)
  const us = ((cpuMs() - c0) * 1000) / writes
  if (nodes[1]!.size() !== k || nodes[2]!.size() !== k) throw new Error(`peers hold ${nodes[1]!.size()}, ${nodes[2]!.size()} of ${k}`)
  for (const n of nodes) n.stop()
  return us
}

/**
 * A lease sweep on the owner expiring `clients` clients at once (marked unhealthy, or removed),
 * the bench's register clients after their lease: the owner writes them all in one turn, then the
 * sync batches go round. Answers the peers' CPU per client (the owner's writes excluded) and the
 * 90th percentile of the sync batches a peer applied, each a turn of its event loop (the
 * longest is a GC pause more often than not).
 */
async function benchExpiry(clients: number, how: 'unhealthy' | 'remove'): Promise<{ peerUs: number; longestMs: number; rounds: number }> {
  const clock = new ManualClock(Date.now())
  const net = new MemoryNet()
  const ids = ['a', 'b', 'c']
  const turns: number[] = []
  let peerMs = 0
  const nodes = ids.map((id) => {
    const transport = net.transport(id)
    if (id !== 'a') {
      // Times every handler of the peers: the sync applies are what runs there.
      const onCall = transport.onCall.bind(transport)
      transport.onCall = (method, handler) =>
        onCall(method, async (from, p) => {
          const t0 = performance.now()
          const c0 = cpuMs()
          const out = await handler(from, p)
          const c = cpuMs() - c0
          if (method === 'distro.sync') turns.push(Math.min(c, performance.now() - t0))
          peerMs += c
          return out
        })
    }
    const n = new DistroNode({ self: id, transport, clock, random: Math.random, logger: silentLogger, members: ids })
    const view = new NamingView(clock.now() * 1000, () => clock.now())
    new NamingPush(view, { clock })
    n.subscribe((clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined) => view.applyClientChange(clientId, prev?.instances ?? [], next?.instances ?? []))
    n.setBulkApply((apply) => view.batch(apply))
    return n
  })
  for (const n of nodes) n.start()
  const owner = nodes[0]!
  // Until each peer has applied `count` more items than at `from`; answers the sync rounds it took.
  const settle = async (from: number[], count: number): Promise<number> => {
    const behind = () => nodes.slice(1).some((n, i) => n.stats().itemsApplied < from[i]! + count)
    let r = 0
    for (; r < 2000 && behind(); r++) {
      clock.advance(SYNC_INTERVAL_MS)
      for (let s = 0; s < 6; s++) await new Promise((r) => setImmediate(r))
    }
    if (behind()) throw new Error('the peers did not apply every change')
    return r
  }
  const applied = () => nodes.slice(1).map((n) => n.stats().itemsApplied)
  const held: ClientRecord[] = []
  for (let k = 0; k < clients; k++) {
    const i = { ...instance(k), service: 'bench-ap-eph', metadata: {} }
    owner.put({ clientId: i.clientId, version: 0, instances: [i] })
    held.push(owner.get(i.clientId)!)
  }
  await settle([0, 0], clients)
  const before = applied()
  turns.length = 0
  peerMs = 0
  for (const r of held) {
    if (how === 'remove') owner.remove(r.clientId)
    else owner.put({ clientId: r.clientId, version: 0, instances: r.instances.map((i) => ({ ...i, healthy: false })) })
  }
  const rounds = await settle(before, clients)
  const expect = how === 'remove' ? 0 : clients
  if (nodes[1]!.size() !== expect || nodes[2]!.size() !== expect) throw new Error(`peers hold ${nodes[1]!.size()}, ${nodes[2]!.size()}, not ${expect}`)
  for (const n of nodes) n.stop()
  turns.sort((a, b) => a - b)
  return { peerUs: (peerMs * 1000) / clients, longestMs: turns[Math.floor(turns.length * 0.9)]!, rounds }
}

/**
 * A minute of lease sweeps (one a second of the clock) on an owner holding `clients` leases, as
 * a node of the AP benchmark holds its share of the register clients during the heartbeat
 * cells: `silent` ones that stopped beating (each crosses its thresholds once; self-preservation,
 * on as by default, pauses their expiry) or all beating every 5 s (a fifth of them each second,
 * outside the measured sweeps), nothing due. The owner is one of three members, so a third of
 * the ids it is handed are its own: only those get leases. Answers the CPU per sweep (median over
 * the minute) and the most one turn of a sweep took.
 */
function benchSweep(clients: number, silent: boolean): { whole: number; turn: number } {
  const clock = new ManualClock(Date.now())
  const net = new MemoryNet()
  const owner = new DistroNode({ self: 'a', transport: net.transport('a'), clock, random: Math.random, logger: silentLogger, members: ['a', 'b', 'c'] })
  const leases = new ClientLeases(owner, clock, () => true, (id) => owner.isResponsible(id), () => owner.membersVersion)
  leases.configure({ selfPreservation: SELF_PRESERVATION_DEFAULTS })
  const ids: string[] = []
  for (let k = 0; ids.length < clients; k++) {
    const i = { ...instance(k), metadata: {} }
    if (!owner.isResponsible(i.clientId)) continue
    owner.put({ clientId: i.clientId, version: 0, instances: [i] })
    leases.renew(i.clientId)
    ids.push(i.clientId)
  }
  const times: number[] = []
  let turn = 0
  for (let second = 1; second <= 60; second++) {
    if (!silent) for (let k = second % 5; k < ids.length; k += 5) leases.renew(ids[k]!)
    clock.advance(1000)
    const c0 = process.cpuUsage()
    leases.sweep()
    let c1 = process.cpuUsage(c0)
    turn = Math.max(turn, (c1.user + c1.system) / 1000)
    // A sweep that looks at more than SCAN_CHUNK leases goes on in later turns: advance(0) runs them.
    clock.advance(0)
    c1 = process.cpuUsage(c0)
    times.push((c1.user + c1.system) / 1000)
  }
  if (silent && leases.selfPreservation()?.active !== true) throw new Error('self-preservation did not pause the silent clients\' expiry')
  return { whole: median(times), turn }
}

if (!opts.only || opts.only === 'sweep') {
  for (const silent of [true, false]) {
    const ms: number[] = []
    const turn: number[] = []
    for (let r = 0; r < REPS; r++) {
      const x = benchSweep(20_000, silent)
      ms.push(x.whole)
      turn.push(x.turn)
    }
    console.log(
      `lease sweeps of 20,000 owned clients, ${silent ? 'all silent (expiry paused)' : 'all beating every 5 s'}: median ${median(ms).toFixed(3)} ms CPU a sweep (${ms.map((u) => u.toFixed(3)).join(' ')}), its longest turn ${median(turn).toFixed(2)} ms`,
    )
  }
}
if (!opts.only || opts.only === 'load') await benchLoad()
if (!opts.only || opts.only === 'expiry') {
  for (const how of ['unhealthy', 'remove'] as const) {
    const us: number[] = []
    const longest: number[] = []
    const rounds: number[] = []
    for (let r = 0; r < REPS; r++) {
      const x = await benchExpiry(20_000, how)
      us.push(x.peerUs)
      longest.push(x.longestMs)
      rounds.push(x.rounds)
    }
    console.log(`expiry (${how}) of 20,000 clients: median ${median(us).toFixed(1)} µs peer CPU per client per peer pair, p90 of the sync applies (CPU, or wall if less) median ${median(longest).toFixed(1)} ms (${longest.map((u) => u.toFixed(1)).join(' ')}), synced in ${median(rounds)} rounds of ${SYNC_INTERVAL_MS} ms`)
  }
}
if (!opts.only || opts.only === 'write') {
  for (const perWindow of [1, 64]) {
    const us: number[] = []
    for (let r = 0; r < REPS; r++) us.push(await benchWrite(perWindow, perWindow === 1 ? 5000 : 50_000))
    console.log(`write, ${perWindow} per sync window: median ${median(us).toFixed(1)} µs CPU per write, 3 nodes (${us.map((u) => u.toFixed(1)).join(' ')})`)
  }
}
