// An in-memory peer network for DistroNode tests: every delivery happens on a ManualClock timer
// (never synchronously), with seeded latency, loss, partitions and nodes that are down. Not a
// test file (tap runs *.test.js only).

import type { ManualClock } from '../../../../src/core/clock.js'
import { silentLogger } from '../../../../src/core/logger.js'
import { DistroNode, type DistroTransport, type NodeId } from '../../../../src/ap/node/distro-node.js'
import type { ClientRecord } from '../../../../src/ap/store.js'
import { instanceKey } from '../../../../src/ap/distro/records.js'
import { CallError } from '../../../helpers/call-error.js'
import { mulberry32 } from '../distro/fixtures.js'

export { CallError as FakeCallError }

type Handler = (from: NodeId, payload: Uint8Array) => Promise<Uint8Array>

export interface NetworkOptions {
  seed: number
  minLatencyMs?: number
  maxLatencyMs?: number
  /** Probability that a request, or its answer, is lost (the caller then times out). */
  dropRate?: number
}

export class FakeNetwork {
  readonly random: () => number
  dropRate: number
  private readonly minLatency: number
  private readonly maxLatency: number
  private readonly handlers = new Map<NodeId, Map<string, Handler>>()
  private readonly down = new Set<NodeId>()
  private readonly cut = new Set<string>()
  /** Calls made, by method; and the largest payload (request or answer) seen. */
  readonly calls = new Map<string, number>()
  maxPayloadBytes = 0

  constructor(
    readonly clock: ManualClock,
    opts: NetworkOptions,
  ) {
    this.random = mulberry32(opts.seed)
    this.dropRate = opts.dropRate ?? 0
    this.minLatency = opts.minLatencyMs ?? 1
    this.maxLatency = opts.maxLatencyMs ?? 5
  }

  transport(self: NodeId): DistroTransport {
    const handlers = new Map<string, Handler>()
    this.handlers.set(self, handlers)
    return {
      call: (to, method, payload, timeoutMs) => this.call(self, to, method, payload, timeoutMs),
      onCall: (method, handler) => {
        if (handlers.has(method)) throw new Error(`${self}: method ${method} already has a handler`)
        handlers.set(method, handler)
      },
    }
  }

  /** Cuts every link between the groups, both ways. */
  partition(...groups: NodeId[][]): void {
    for (let i = 0; i < groups.length; i++) {
      for (let j = 0; j < groups.length; j++) {
        if (i === j) continue
        for (const a of groups[i]!) for (const b of groups[j]!) this.cut.add(`${a}|${b}`)
      }
    }
  }

  heal(): void {
    this.cut.clear()
  }

  setDown(id: NodeId, down: boolean): void {
    if (down) this.down.add(id)
    else this.down.delete(id)
  }

  private linked(a: NodeId, b: NodeId): boolean {
    return !this.cut.has(`${a}|${b}`) && !this.down.has(a) && !this.down.has(b)
  }

  private latency(): number {
    return this.minLatency + Math.floor(this.random() * (this.maxLatency - this.minLatency + 1))
  }

  private call(from: NodeId, to: NodeId, method: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1)
    this.maxPayloadBytes = Math.max(this.maxPayloadBytes, payload.length)
    return new Promise((resolve, reject) => {
      let settled = false
      const settle = (f: () => void) => {
        if (settled) return
        settled = true
        cancelTimeout()
        f()
      }
      const cancelTimeout = this.clock.setTimer(timeoutMs, () => settle(() => reject(new CallError('TIMEOUT', `${from} -> ${to} ${method}: timed out`))))
      if (!this.linked(from, to)) {
        // Like a refused connection: the caller learns soon.
        this.clock.setTimer(this.latency(), () => settle(() => reject(new CallError('UNREACHABLE', `${from} -> ${to}: unreachable`))))
        return
      }
      if (this.random() < this.dropRate) return // lost request: the caller times out
      const copy = payload.slice()
      this.clock.setTimer(this.latency(), () => {
        const handler = this.handlers.get(to)?.get(method)
        if (!handler || this.down.has(to)) return
        let result: Promise<Uint8Array>
        try {
          result = handler(from, copy)
        } catch (err) {
          result = Promise.reject(err)
        }
        result.then(
          (answer) => {
            this.maxPayloadBytes = Math.max(this.maxPayloadBytes, answer.length)
            if (!this.linked(to, from) || this.random() < this.dropRate) return // lost answer
            this.clock.setTimer(this.latency(), () => settle(() => resolve(answer.slice())))
          },
          (err: { code?: string; message?: string }) => {
            if (!this.linked(to, from)) return
            this.clock.setTimer(this.latency(), () => settle(() => reject(new CallError('REMOTE', `${to}: ${err.code}: ${err.message}`, err.code ?? 'INTERNAL'))))
          },
        )
      })
    })
  }
}

/** Lets every promise continuation run (microtasks and one macrotask turn). */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** Advances the clock by `ms` in steps, letting async work run between steps. */
export async function run(clock: ManualClock, ms: number, step = 5): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t))
    await flush()
  }
}

export interface Cluster {
  readonly net: FakeNetwork
  readonly nodes: Map<NodeId, DistroNode>
  /** Listener calls per node: [clientId, prev version, next version, origin]. */
  readonly events: Map<NodeId, [string, number | undefined, number | undefined, string][]>
}

export function makeCluster(clock: ManualClock, ids: NodeId[], opts: NetworkOptions & { verifyIntervalMs?: number; maxSyncAttempts?: number; start?: boolean }): Cluster {
  const net = new FakeNetwork(clock, opts)
  const nodes = new Map<NodeId, DistroNode>()
  const events = new Map<NodeId, [string, number | undefined, number | undefined, string][]>()
  for (const id of ids) addNode({ net, nodes, events }, clock, id, ids, opts)
  return { net, nodes, events }
}

export function addNode(c: Cluster, clock: ManualClock, id: NodeId, members: NodeId[], opts: { seed: number; verifyIntervalMs?: number; maxSyncAttempts?: number; start?: boolean }): DistroNode {
  const node = new DistroNode({
    self: id,
    transport: c.net.transport(id),
    clock,
    random: mulberry32(opts.seed ^ hashId(id)),
    logger: silentLogger,
    members,
    verifyIntervalMs: opts.verifyIntervalMs ?? 1000,
    requestTimeoutMs: 200,
    ...(opts.maxSyncAttempts === undefined ? {} : { maxSyncAttempts: opts.maxSyncAttempts }),
  })
  const ev: [string, number | undefined, number | undefined, string][] = []
  c.events.set(id, ev)
  node.subscribe((clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined, origin?: string) => {
    ev.push([clientId, prev?.version, next?.version, origin ?? '?'])
  })
  c.nodes.set(id, node)
  if (opts.start !== false) node.start()
  return node
}

function hashId(id: string): number {
  let h = 0
  for (let i = 0; i < id.length; i++) h = (Math.imul(h, 31) + id.charCodeAt(i)) | 0
  return h
}

/** A node's whole visible state, canonical: sorted [clientId, version, instances JSON]. */
export function stateOf(node: DistroNode): string[] {
  const out: string[] = []
  // Instances in key order: nodes that merged concurrent writes in different orders hold the same state.
  for (const r of node.clients()) out.push(`${r.clientId} ${r.version} ${JSON.stringify([...r.instances].sort((x, y) => (instanceKey(x) < instanceKey(y) ? -1 : 1)))}`)
  return out.sort()
}

/** Whether all nodes hold identical records. */
export function converged(nodes: Iterable<DistroNode>): boolean {
  let first: string | null = null
  for (const n of nodes) {
    const s = stateOf(n).join('\n')
    if (first === null) first = s
    else if (s !== first) return false
  }
  return true
}
