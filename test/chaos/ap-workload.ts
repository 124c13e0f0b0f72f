// The AP workload: clients with one ephemeral instance each heartbeat every second throughout the
// run, as the SDK does (a client sticks to one node and moves to the next when a call fails; a
// beat answered "not registered" makes it register again). Every registration and beat is
// recorded with the node that acknowledged it. Meanwhile every node's view of the service is
// sampled once a second (a stale read: what that node itself serves), for the checker
// (ap-check.ts).

import { setTimeout as sleep } from 'node:timers/promises'
import type { Random } from '../sim/random.js'
import { call } from './cp-workload.js'

export const AP_SERVICE = 'chaos-ap'
const GROUP = 'chaos'
const BEAT_EVERY_MS = 1_000
const CALL_TIMEOUT_MS = 2_000
const SAMPLE_EVERY_MS = 1_000
/** After a failed call, before the next node is tried: refused connections fail at once. */
const FAILOVER_PAUSE_MS = 100

export interface ApClient {
  readonly id: string
  readonly ip: string
}

export interface Ack {
  readonly client: string
  readonly node: string
  /** When the acknowledgement arrived, ms since the run started. */
  readonly atMs: number
  readonly kind: 'register' | 'beat'
}

export interface Lost {
  readonly client: string
  readonly node: string
  readonly atMs: number
}

export interface ViewSample {
  readonly node: string
  readonly startMs: number
  readonly endMs: number
  /** ip of every instance listed, and whether healthy. */
  readonly instances: ReadonlyMap<string, boolean>
}

export class ApWorkload {
  readonly clients: ApClient[]
  readonly acks: Ack[] = []
  /** Beats answered `registered: false`: the node did not know the client. */
  readonly lost: Lost[] = []
  readonly samples: ViewSample[] = []
  /** The first acknowledged registration of each client. */
  readonly registeredAt = new Map<string, number>()
  calls = 0
  failedCalls = 0
  private running = false
  private loops: Promise<void>[] = []

  constructor(
    private readonly nodes: readonly string[],
    private readonly url: (node: string) => string,
    private readonly rng: Random,
    private readonly startedAt: number,
    count: number,
  ) {
    this.clients = Array.from({ length: count }, (_, i) => ({ id: `chaos-client-${i}`, ip: `10.2.${Math.floor(i / 250)}.${(i % 250) + 1}` }))
  }

  private now(): number {
    return Date.now() - this.startedAt
  }

  start(): void {
    this.running = true
    this.clients.forEach((c, i) => this.loops.push(this.clientLoop(c, i % this.nodes.length, this.rng.int(0, BEAT_EVERY_MS))))
    this.loops.push(this.sampleLoop())
  }

  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.loops)
  }

  private async clientLoop(client: ApClient, first: number, delayMs: number): Promise<void> {
    await sleep(delayMs)
    let node = first
    let registered = false
    while (this.running) {
      const id = this.nodes[node]!
      const began = Date.now()
      const r = registered
        ? await call(this.url(id), 'PUT', '/v1/ns/instances/beat', { clientId: client.id }, CALL_TIMEOUT_MS)
        : await call(this.url(id), 'POST', '/v1/ns/instances', { group: GROUP, service: AP_SERVICE, ip: client.ip, port: 9000, clientId: client.id }, CALL_TIMEOUT_MS)
      this.calls++
      if ('error' in r || r.status !== 200) {
        // Fail over to the next node at once, as the SDK does.
        this.failedCalls++
        node = (node + 1) % this.nodes.length
        await sleep(FAILOVER_PAUSE_MS)
        continue
      }
      const at = this.now()
      if (!registered) {
        registered = true
        this.acks.push({ client: client.id, node: id, atMs: at, kind: 'register' })
        if (!this.registeredAt.has(client.id)) this.registeredAt.set(client.id, at)
      } else if (r.body.registered === false) {
        this.lost.push({ client: client.id, node: id, atMs: at })
        registered = false
        continue
      } else this.acks.push({ client: client.id, node: id, atMs: at, kind: 'beat' })
      await sleep(Math.max(0, BEAT_EVERY_MS - (Date.now() - began)))
    }
  }

  /** Every node's own view (stale read), once a second, each node on its own. */
  private async sampleLoop(): Promise<void> {
    while (this.running) {
      const began = Date.now()
      const got = await Promise.all(this.nodes.map((n) => this.view(n)))
      for (const s of got) if (s) this.samples.push(s)
      await sleep(Math.max(0, SAMPLE_EVERY_MS - (Date.now() - began)))
    }
  }

  /** One node's view of the service, or null when it does not answer. */
  async view(node: string): Promise<ViewSample | null> {
    const startMs = this.now()
    const r = await call(this.url(node), 'GET', `/v1/ns/instances?group=${GROUP}&service=${AP_SERVICE}&stale=true`, undefined, CALL_TIMEOUT_MS)
    const endMs = this.now()
    if ('error' in r) return null
    if (r.status === 404) return { node, startMs, endMs, instances: new Map() }
    if (r.status !== 200) return null
    const instances = new Map<string, boolean>((r.body.instances as { ip: string; healthy: boolean }[]).map((i) => [i.ip, i.healthy]))
    return { node, startMs, endMs, instances }
  }
}

