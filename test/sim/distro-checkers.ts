// The two checkers of the Distro simulation (issue 4, item 8).
//
// 1. No live client's instance is ever removed (NoLiveRemovalChecker), checked on every change of
//    every node's store as it happens, and reported after the clock step it happened in.
// 2. Convergence after quiescence (convergenceProblems): once every fault is healed and the
//    cluster has run quiet, every node holds identical client records and identical naming views,
//    and they are exactly the expected live set.
//
// What "live" means, given partitions
// -----------------------------------
// A client is beating while it runs its beat loop: it registered all its instances (each
// registration was acknowledged), it has not died and has not begun to deregister. Beating alone
// cannot protect a client: a client whose beats all land on a node cut off from the majority is,
// as far as the majority can tell, dead, and the majority's owner rightly expires it (the minority
// node holds its own expiry back, self-preservation, but it cannot renew a lease it does not hold).
// So a beat counts only when it reaches the side that decides:
//
//   A counted beat is a beat the client sent, at time s, through a node that at s
//   - was up and had finished loading (EphemeralCluster.start() had resolved),
//   - was in a network component (nodes up and linked to it) holding a strict majority of the
//     cluster's members, every one of them loaded, and
//   - had seen no change of topology (partition, heal, crash, restart, a node finishing its load)
//     for SETTLE_MS (3 membership checks), so that every node of the component agrees on the
//     healthy members and therefore on the owner,
//   and that was answered `registered: true` (so some node of that component renewed the lease;
//   a beat lost on the way, or answered with an error, does not count).
//
//   A client is LIVE at time t if it is beating at t and its latest counted beat was sent at
//   s >= t - PROTECT_MS, PROTECT_MS = removeAfter (30 s) - one beat interval (5 s) = 25 s.
//
// The owner removes a client only after 30 s of silence on its lease (a takeover counts as a
// beat), so a client LIVE at t was renewed by its owner less than 30 s before t, minus a beat
// interval of margin for the sweep's 1 s granularity and latency. A LIVE client's instances must
// not leave any node's store (hence view) at t: not by its owner's sweep, not by a stale lease on
// another node, not by a tombstone synced, pulled or loaded from anywhere.
//
// One exception: a removal made while the client was not LIVE (its beats went to a minority)
// reaches, later, a node that missed it, and drops that node's older copy. The node applies the
// newest state it has; if the client registered again since, the node has not had that record
// yet (or the merge would have kept the instance), and may not be able to (it is on the other
// side of a partition from it). Such a late copy is allowed at a node whose copy was older than
// the allowed removal, never as a node's own decision; that the newer record does reach every
// node is checker 1's, at the end.
//
// A partition with no majority (2|2) gives no counted beats: clients are then LIVE only while
// their last counted beat from before is recent. The checker is conservative there (the system
// should expire nothing during a 2|2 split, but a removal of a client silent on the majority for
// 25 s is not flagged).

import type { ClientRecord } from '../../src/ap/store.js'
import type { DistroNode } from '../../src/ap/node/distro-node.js'
import { BEAT_DEFAULTS, type Instance, type ServiceName } from '../../src/naming/model.js'
import type { NamingView } from '../../src/naming/view.js'

export const SETTLE_MS = 3_000
export const PROTECT_MS = BEAT_DEFAULTS.removeAfterMs - BEAT_DEFAULTS.intervalMs

/** An instance's identity across services. */
export function instanceKey(i: Pick<Instance, 'namespace' | 'group' | 'service' | 'cluster' | 'ip' | 'port'>): string {
  return `${i.namespace}/${i.group}/${i.service}/${i.cluster}/${i.ip}:${i.port}`
}

/** Which clients are beating, and when each sent its latest counted beat. */
export class Liveness {
  private readonly beating = new Set<string>()
  private readonly lastCounted = new Map<string, number>()

  startBeating(clientId: string): void {
    this.beating.add(clientId)
  }

  stopBeating(clientId: string): void {
    this.beating.delete(clientId)
  }

  isBeating(clientId: string): boolean {
    return this.beating.has(clientId)
  }

  /** A beat sent at `sentAt` through a settled majority node was answered registered: true. */
  counted(clientId: string, sentAt: number): void {
    const prev = this.lastCounted.get(clientId)
    if (prev === undefined || sentAt > prev) this.lastCounted.set(clientId, sentAt)
  }

  lastCountedBeat(clientId: string): number | undefined {
    return this.lastCounted.get(clientId)
  }

  /** LIVE, as defined above. */
  isLive(clientId: string, now: number): boolean {
    const s = this.lastCounted.get(clientId)
    return this.beating.has(clientId) && s !== undefined && now - s <= PROTECT_MS
  }
}

export interface RemovalStats {
  /** Instances that left some node's store. */
  removals: number
  /** Of those, instances of clients that were beating but not LIVE (allowed). */
  removalsWhileBeating: number
  /** Instances of LIVE clients marked unhealthy somewhere (allowed, counted for the record). */
  unhealthyWhileLive: number
  /**
   * Instances of LIVE clients dropped from a node's copy older than a removal that was allowed
   * (its client was not LIVE then), by a copy from a peer at least as new as that removal: the
   * allowed removal reaching a node that missed it (allowed, counted).
   */
  lateRemovals: number
}

/** Checker 2: a LIVE client's instance never leaves any node's store. */
export class NoLiveRemovalChecker {
  readonly violations: string[] = []
  readonly stats: RemovalStats = { removals: 0, removalsWhileBeating: 0, unhealthyWhileLive: 0, lateRemovals: 0 }
  /**
   * Instances (client id, a space, instance key) whose removal was allowed, with the versions of
   * those removals. A client can lose an instance while it is not LIVE (its beats went to a
   * minority) and be LIVE again before a node that was cut off then hears of it: that node
   * dropping its old copy is that removal arriving late (seed 141812), even once the client has
   * registered again elsewhere, where the node cannot see it yet (seed 2522, sticky clients).
   */
  private readonly allowedRemovals = new Map<string, number[]>()

  constructor(
    private readonly liveness: Liveness,
    private readonly now: () => number,
    /** For the report: who wrote a version of a client, and whether it then saw a majority. */
    private readonly describeWrite: (clientId: string, version: number | undefined) => string = () => '',
  ) {}

  /**
   * To be subscribed to every node's store (after the view's listener). `version` is the version
   * the node holds after the change (the tombstone's for a removal).
   */
  onChange(node: string, clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined, origin: string | undefined, version?: number): void {
    if (!prev) return
    const staying = new Map<string, Instance>()
    for (const i of next?.instances ?? []) staying.set(instanceKey(i), i)
    const gone: string[] = []
    for (const i of prev.instances) {
      const k = instanceKey(i)
      const after = staying.get(k)
      if (!after) gone.push(k)
      else if (i.healthy && !after.healthy && this.liveness.isLive(clientId, this.now())) this.stats.unhealthyWhileLive++
    }
    if (gone.length === 0) return
    this.stats.removals += gone.length
    const now = this.now()
    if (this.liveness.isLive(clientId, now)) {
      // A copy from a peer, at least as new as an allowed removal, over a copy here older than it.
      const late = (k: string) =>
        origin !== 'local' && version !== undefined && (this.allowedRemovals.get(`${clientId} ${k}`) ?? []).some((removedAt) => prev.version < removedAt && removedAt <= version)
      const early = gone.filter((k) => !late(k))
      this.stats.lateRemovals += gone.length - early.length
      if (early.length === 0) return
      const last = this.liveness.lastCountedBeat(clientId)!
      this.violations.push(
        `a LIVE client's instances were removed: node ${node} dropped ${early.join(', ')} of ${clientId} ` +
          `(${next ? 'a new record without them' : 'the whole client'}, ${origin === 'local' ? "by this node's own write (its lease sweep)" : 'by a copy from a peer'}` +
          `${this.describeWrite(clientId, version)}); ` +
          `the client's latest counted beat was ${((now - last) / 1000).toFixed(3)} s earlier`,
      )
    } else {
      if (this.liveness.isBeating(clientId)) this.stats.removalsWhileBeating += gone.length
      if (version !== undefined) {
        for (const k of gone) {
          const key = `${clientId} ${k}`
          const versions = this.allowedRemovals.get(key)
          if (versions === undefined) this.allowedRemovals.set(key, [version])
          else if (!versions.includes(version)) versions.push(version)
        }
      }
    }
  }
}

export interface ConvergingNode {
  readonly id: string
  readonly store: DistroNode
  readonly view: NamingView
}

function storeLines(store: DistroNode): string[] {
  const out: string[] = []
  for (const r of store.clients()) {
    const instances = [...r.instances].sort((a, b) => (instanceKey(a) < instanceKey(b) ? -1 : 1))
    out.push(`${r.clientId} v${r.version} ${JSON.stringify(instances)}`)
  }
  return out.sort()
}

function viewLines(view: NamingView, services: readonly ServiceName[]): string[] {
  const out: string[] = []
  for (const s of services) {
    const list = view.list({ ...s, clusters: [], healthyOnly: false, includeDisabled: true, stale: true })
    out.push(`${s.service}: ${list.checksum} ${list.instances.map((i) => `${i.clientId}/${i.ip}:${i.port}${i.healthy ? '' : '(unhealthy)'}`).join(' ')}`)
  }
  return out
}

function firstDifference(a: readonly string[], b: readonly string[]): string {
  const onlyA = a.filter((x) => !b.includes(x))
  const onlyB = b.filter((x) => !a.includes(x))
  return `only in the first: ${onlyA.slice(0, 4).join(' | ') || '-'}; only in the second: ${onlyB.slice(0, 4).join(' | ') || '-'}`
}

/**
 * Checker 1, after quiescence: every node's records and views are identical, and they are the
 * expected live set: each client in `expected` holds exactly its instances, all healthy; no other
 * client is held anywhere. An empty answer means converged.
 */
export function convergenceProblems(nodes: readonly ConvergingNode[], expected: ReadonlyMap<string, readonly Instance[]>, services: readonly ServiceName[]): string[] {
  const problems: string[] = []
  const first = nodes[0]!
  const stores = nodes.map((n) => storeLines(n.store))
  const views = nodes.map((n) => viewLines(n.view, services))
  for (let i = 1; i < nodes.length; i++) {
    if (stores[i]!.join('\n') !== stores[0]!.join('\n')) problems.push(`stores differ between ${first.id} and ${nodes[i]!.id}: ${firstDifference(stores[0]!, stores[i]!)}`)
    if (views[i]!.join('\n') !== views[0]!.join('\n')) problems.push(`views differ between ${first.id} and ${nodes[i]!.id}: ${firstDifference(views[0]!, views[i]!)}`)
  }
  for (const n of nodes) {
    const held = new Map<string, ClientRecord>()
    for (const r of n.store.clients()) held.set(r.clientId, r)
    for (const [clientId, instances] of expected) {
      const r = held.get(clientId)
      if (!r) {
        problems.push(`${n.id} does not hold live client ${clientId}`)
        continue
      }
      const want = instances.map(instanceKey).sort().join(' ')
      const got = r.instances.map(instanceKey).sort().join(' ')
      if (want !== got) problems.push(`${n.id} holds live client ${clientId} with instances [${got}], expected [${want}]`)
      const sick = r.instances.filter((i) => !i.healthy)
      if (sick.length > 0) problems.push(`${n.id} holds live client ${clientId} with unhealthy instances ${sick.map(instanceKey).join(', ')}`)
    }
    for (const clientId of held.keys()) if (!expected.has(clientId)) problems.push(`${n.id} still holds client ${clientId}, which stopped beating long ago`)
    // The view is the store's projection: every instance held is listed, and nothing else.
    const fromStore = new Set<string>()
    for (const r of held.values()) for (const i of r.instances) fromStore.add(`${instanceKey(i)} ${i.clientId} ${i.healthy}`)
    const fromView = new Set<string>()
    for (const s of services) {
      for (const i of n.view.list({ ...s, clusters: [], healthyOnly: false, includeDisabled: true, stale: true }).instances) fromView.add(`${instanceKey(i)} ${i.clientId} ${i.healthy}`)
    }
    const a = [...fromStore].sort()
    const b = [...fromView].sort()
    if (a.join('\n') !== b.join('\n')) problems.push(`${n.id}'s view does not match its store: ${firstDifference(a, b)}`)
  }
  return problems
}
