// The simulated peer network of the Distro simulation: the same delivery model as the unit tests'
// fake network (test/unit/ap/node/fake-network.ts: every delivery on a ManualClock timer, never
// synchronously, with seeded latency and loss), plus what a cluster simulation needs on top:
//
// - partitions as groups: each node belongs to one group, and only nodes of the same group are
//   linked (symmetric partitions: 1|2, 2|2, 2|3 ...); heal() puts everyone back in one group;
// - crashes with incarnations: a node that restarts gets a fresh transport, and nothing of its
//   previous life can send or receive any more (its pending answers are lost, calls it still makes
//   fail as unreachable, and requests reach only the handlers of the current incarnation);
// - slow periods: the latency range can be widened for a while (delays, reordering).
//
// Everything random comes from the Random stream it is given, so a seed replays exactly.

import type { ManualClock } from '../../src/core/clock.js'
import type { DistroTransport, NodeId } from '../../src/ap/node/distro-node.js'
import { CallError } from '../helpers/call-error.js'
import type { Random } from './random.js'

type Handler = (from: NodeId, payload: Uint8Array) => Promise<Uint8Array>

export interface NetworkStats {
  messages: number
  dropped: number
  unreachable: number
}

export class SimNetwork {
  dropRate = 0
  minLatencyMs: number
  maxLatencyMs: number
  readonly stats: NetworkStats = { messages: 0, dropped: 0, unreachable: 0 }
  private readonly handlers = new Map<string, Map<string, Handler>>()
  private readonly incarnation = new Map<NodeId, number>()
  private readonly down = new Set<NodeId>()
  private readonly group = new Map<NodeId, number>()

  constructor(
    readonly clock: ManualClock,
    private readonly random: Random,
    latency: readonly [number, number],
  ) {
    this.minLatencyMs = latency[0]
    this.maxLatencyMs = latency[1]
  }

  /** The transport of one incarnation of a node; the node is up from now on. */
  transport(self: NodeId, incarnation: number): DistroTransport {
    const handlers = new Map<string, Handler>()
    this.handlers.set(`${self}#${incarnation}`, handlers)
    this.incarnation.set(self, incarnation)
    this.down.delete(self)
    return {
      call: (to, method, payload, timeoutMs) => this.call(self, incarnation, to, method, payload, timeoutMs),
      onCall: (method, handler) => {
        if (handlers.has(method)) throw new Error(`${self}: method ${method} already has a handler`)
        handlers.set(method, handler)
      },
    }
  }

  /** A crash: the node's current incarnation is gone for good. */
  crash(id: NodeId): void {
    this.down.add(id)
    this.handlers.delete(`${id}#${this.incarnation.get(id)}`)
  }

  isDown(id: NodeId): boolean {
    return this.down.has(id)
  }

  /** Each group can talk only within itself; nodes not named are put in a group of their own. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    this.group.clear()
    groups.forEach((g, i) => {
      for (const id of g) this.group.set(id, i + 1)
    })
  }

  heal(): void {
    this.group.clear()
  }

  /** Whether a and b can exchange messages now (both up, same side of any partition). */
  linked(a: NodeId, b: NodeId): boolean {
    if (this.down.has(a) || this.down.has(b)) return false
    return a === b || this.group.size === 0 || (this.group.has(a) && this.group.get(a) === this.group.get(b))
  }

  private alive(id: NodeId, incarnation: number): boolean {
    return !this.down.has(id) && this.incarnation.get(id) === incarnation
  }

  private latency(): number {
    return this.random.int(this.minLatencyMs, this.maxLatencyMs)
  }

  private call(from: NodeId, inc: number, to: NodeId, method: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    this.stats.messages++
    return new Promise((resolve, reject) => {
      let settled = false
      const settle = (f: () => void) => {
        if (settled) return
        settled = true
        cancelTimeout()
        f()
      }
      const cancelTimeout = this.clock.setTimer(timeoutMs, () => settle(() => reject(new CallError('TIMEOUT', `${from} -> ${to} ${method}: timed out`))))
      if (!this.alive(from, inc) || !this.linked(from, to)) {
        // Like a refused connection: the caller learns soon.
        this.stats.unreachable++
        this.clock.setTimer(this.latency(), () => settle(() => reject(new CallError('UNREACHABLE', `${from} -> ${to}: unreachable`))))
        return
      }
      if (this.random.chance(this.dropRate)) {
        this.stats.dropped++
        return // lost request: the caller times out
      }
      const copy = payload.slice()
      this.clock.setTimer(this.latency(), () => {
        // Delivered to whatever incarnation of `to` runs now, if the link still holds.
        if (!this.linked(from, to) || !this.alive(from, inc)) return
        const handler = this.handlers.get(`${to}#${this.incarnation.get(to)}`)?.get(method)
        if (!handler) return
        const toInc = this.incarnation.get(to)!
        let result: Promise<Uint8Array>
        try {
          result = handler(from, copy)
        } catch (err) {
          result = Promise.reject(err)
        }
        const answerable = () => this.linked(to, from) && this.alive(from, inc) && this.alive(to, toInc)
        result.then(
          (answer) => {
            if (!answerable()) return
            if (this.random.chance(this.dropRate)) {
              this.stats.dropped++
              return // lost answer
            }
            const a = answer.slice()
            this.clock.setTimer(this.latency(), () => {
              if (this.alive(from, inc)) settle(() => resolve(a))
            })
          },
          (err: { code?: string; message?: string }) => {
            if (!answerable()) return
            this.clock.setTimer(this.latency(), () => {
              if (this.alive(from, inc)) settle(() => reject(new CallError('REMOTE', `${to}: ${err.code}: ${err.message}`, err.code ?? 'INTERNAL')))
            })
          },
        )
      })
    })
  }
}
