// Expiry after a takeover. Only the responsible node expires a client (marks its instances
// unhealthy, then removes them), and it measures silence from the last beat it received. A node
// that has just become responsible has received no beats: the client was beating the old owner.
// Counting from nothing, or from a beat it saw before it last lost the client, it would expire
// live clients at once. Nacos did exactly that on restart: loading 300k instances took longer
// than the 15 s heartbeat timeout and everything was marked unhealthy (#7697).
//
// So a takeover counts as a beat: silence is measured from the later of the last beat and the
// moment this node became responsible. A client that is alive beats within one interval and is
// renewed; one that is dead is expired one full timeout after the takeover, never sooner. The
// same grace covers a client this node learns of while already responsible (a sync, pull or
// push of a client it never had a lease for, or a startup snapshot): the driver calls grant().
//
// Bounded: an entry exists only for an owned client that has not beaten since its takeover; it
// goes at its first beat (renewed), when ownership moves away, or when the client is removed.

import type { OwnershipChange } from './ownership.js'
import type { NodeId } from './types.js'

export interface ExpiryCandidate {
  readonly clientId: string
  /** The last beat this node received from the client; undefined if none. */
  readonly lastBeat: number | undefined
  /** The client's timeout in ms (per instance metadata: the shortest that applies). */
  readonly timeoutMs: number
}

export class TakeoverGrace {
  /** clientId -> when this node became responsible for it. */
  private readonly since = new Map<string, number>()

  constructor(readonly self: NodeId) {}

  /** Applies ownership changes (Replica.setMembers): takeovers start a grace, handovers end one. */
  ownershipChanged(changes: Iterable<OwnershipChange>, now: number): void {
    for (const ch of changes) {
      if (ch.to === this.self && ch.from !== this.self) this.since.set(ch.clientId, now)
      else if (ch.from === this.self && ch.to !== this.self) this.since.delete(ch.clientId)
    }
  }

  /** A grace from now for one owned client this node has no lease for. */
  grant(clientId: string, now: number): void {
    this.since.set(clientId, now)
  }

  /** The client beat: from here on its last beat is later than the takeover, so the grace is moot. */
  renewed(clientId: string): void {
    this.since.delete(clientId)
  }

  /** The client was removed, or is no longer this node's. */
  forget(clientId: string): void {
    this.since.delete(clientId)
  }

  /** When the grace of a client began, if it has one. */
  graceSince(clientId: string): number | undefined {
    return this.since.get(clientId)
  }

  /**
   * How long the client counts as silent at `now`: since its last beat or its takeover, whichever
   * is later. A client with neither is treated as taken over now: it gets a grace from this call
   * on, so a client the driver forgot to grant() is expired late, never early.
   */
  silentMs(clientId: string, lastBeat: number | undefined, now: number): number {
    let since = this.since.get(clientId)
    if (since === undefined && lastBeat === undefined) {
      this.since.set(clientId, now)
      since = now
    }
    const from = Math.max(lastBeat ?? -Infinity, since ?? -Infinity)
    return Math.max(0, now - from)
  }

  /** Whether the client has been silent longer than its timeout at `now`. */
  mayExpire(clientId: string, lastBeat: number | undefined, now: number, timeoutMs: number): boolean {
    return this.silentMs(clientId, lastBeat, now) > timeoutMs
  }

  /** Of the candidates (the clients this node owns), those that may be expired at `now`. */
  expirable(candidates: Iterable<ExpiryCandidate>, now: number): string[] {
    const out: string[] = []
    for (const c of candidates) if (this.mayExpire(c.clientId, c.lastBeat, now, c.timeoutMs)) out.push(c.clientId)
    return out
  }

  get size(): number {
    return this.since.size
  }
}

/**
 * Self-preservation, after Eureka: a node that sees no more than half of the cluster's members
 * healthy is more likely cut off than surrounded by failures, and the clients it stops hearing
 * from are probably beating another side of the partition. It keeps serving what it has (AP) but
 * expires nothing until it sees a majority again; when the partition heals, the majority side's
 * owners decide, and a removal made in isolation cannot then win over a live client's record.
 * A single-node cluster always expires (1 of 1 is a majority).
 */
export function expiryAllowed(healthyMembers: number, clusterSize: number): boolean {
  return clusterSize > 0 && 2 * healthyMembers > clusterSize
}
