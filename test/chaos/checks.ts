// The checks of a chaos run, on what the workloads recorded.
//
// CP: the history must be linearizable (test/sim/linearizability.ts), final reads included; since
// those come after every other call, a write that was acknowledged and then lost shows up as a
// final read that no order of the history explains.
//
// AP: "no instance whose client kept beating and could reach a majority was removed". A node is
// impaired while it is killed, paused, cut off or being re-added, and for a recovery allowance
// after (its copy may lag until Distro's verification repairs it: two verify intervals). A client
// is kept alive at time t when acknowledgements from nodes that were not impaired at the time
// reached it at least every KEPT_ALIVE_GAP_MS over the delete timeout before t. Then:
// - a view sampled from a node not impaired during the sample must list every client kept alive
//   that registered at least SYNC_ALLOWANCE_MS before the sample;
// - a beat that a node not impaired answers "not registered" must not be for a client kept alive.
// After the faults: every node's view converges to the same, listing every client.

import type { Ack, ApClient, Lost, ViewSample } from './ap-workload.js'
import { type CheckResult, checkLinearizable, type HistoryOp } from '../sim/linearizability.js'

/** The server's default: an ephemeral instance silent this long is removed. */
const DELETE_TIMEOUT_MS = 30_000
/** Well under the 15 s after which a silent client's instances turn unhealthy. */
const KEPT_ALIVE_GAP_MS = 10_000
/** A registration reaches every peer's view within this (sync lag p99 is far under it). */
const SYNC_ALLOWANCE_MS = 3_000
/** Distro's verify interval is 5 s: a lagging copy is repaired within two. */
export const RECOVERY_ALLOWANCE_MS = 12_000

export class Impairments {
  private readonly spans = new Map<string, { from: number; to: number }[]>()

  /** `to` Infinity while it lasts; close() ends it. */
  open(node: string, from: number): void {
    this.list(node).push({ from, to: Infinity })
  }

  close(node: string, at: number): void {
    for (const s of this.list(node)) if (s.to === Infinity) s.to = at + RECOVERY_ALLOWANCE_MS
  }

  /** Whether the node was impaired at any moment of [from, to]. */
  during(node: string, from: number, to: number): boolean {
    return this.list(node).some((s) => s.from <= to && from <= s.to)
  }

  private list(node: string): { from: number; to: number }[] {
    let l = this.spans.get(node)
    if (!l) this.spans.set(node, (l = []))
    return l
  }
}

export interface CpVerdict {
  readonly ok: boolean
  readonly inconclusive: boolean
  readonly steps: number
  readonly explanation?: string
  readonly key?: string
}

export function checkCp(history: readonly HistoryOp[]): CpVerdict {
  const r: CheckResult = checkLinearizable(history, { maxSteps: 20_000_000 })
  return {
    ok: r.ok,
    inconclusive: r.inconclusive ?? false,
    steps: r.steps,
    ...(r.key !== undefined ? { key: r.key } : {}),
    ...(r.explanation !== undefined ? { explanation: r.explanation } : {}),
  }
}

export interface ApAnomaly {
  readonly kind: 'missing' | 'lost'
  readonly client: string
  readonly node: string
  readonly atMs: number
  readonly detail: string
}

export function checkAp(clients: readonly ApClient[], acks: readonly Ack[], lost: readonly Lost[], samples: readonly ViewSample[], impairments: Impairments, registeredAt: ReadonlyMap<string, number>): ApAnomaly[] {
  // Acknowledgements by nodes not impaired at the time, per client, in time order.
  const good = new Map<string, number[]>()
  for (const a of acks) {
    if (impairments.during(a.node, a.atMs, a.atMs)) continue
    let l = good.get(a.client)
    if (!l) good.set(a.client, (l = []))
    l.push(a.atMs)
  }
  for (const l of good.values()) l.sort((x, y) => x - y)
  const keptAlive = (client: string, at: number): boolean => {
    const reg = registeredAt.get(client)
    if (reg === undefined || reg > at - SYNC_ALLOWANCE_MS) return false
    const times = good.get(client) ?? []
    let last = Math.max(reg, at - DELETE_TIMEOUT_MS)
    // The last acknowledgement before the window counts as its start.
    if (!times.some((t) => t <= last && t >= last - KEPT_ALIVE_GAP_MS)) return false
    for (const t of times) {
      if (t <= last) continue
      if (t > at) break
      if (t - last > KEPT_ALIVE_GAP_MS) return false
      last = t
    }
    return at - last <= KEPT_ALIVE_GAP_MS
  }
  const byIp = new Map(clients.map((c) => [c.ip, c.id]))
  const out: ApAnomaly[] = []
  for (const s of samples) {
    if (impairments.during(s.node, s.startMs, s.endMs)) continue
    for (const [ip, id] of byIp) {
      if (s.instances.has(ip) || !keptAlive(id, s.startMs)) continue
      out.push({ kind: 'missing', client: id, node: s.node, atMs: s.startMs, detail: `${s.node} did not list ${ip} (client ${id}, kept alive by its beats) at ${s.startMs} ms` })
    }
  }
  for (const l of lost) {
    if (impairments.during(l.node, l.atMs, l.atMs) || !keptAlive(l.client, l.atMs)) continue
    out.push({ kind: 'lost', client: l.client, node: l.node, atMs: l.atMs, detail: `${l.node} answered a beat of ${l.client} "not registered" at ${l.atMs} ms, though its beats kept it alive` })
  }
  return out
}

/** Whether every view lists every client, all with the same health. */
export function viewsAgree(views: readonly ViewSample[], clients: readonly ApClient[]): boolean {
  if (views.length === 0) return false
  const first = views[0]!.instances
  if (first.size !== clients.length || clients.some((c) => !first.has(c.ip))) return false
  return views.every((v) => v.instances.size === first.size && [...first].every(([ip, healthy]) => v.instances.get(ip) === healthy))
}
