// Which node is responsible for a client: rendezvous (highest-random-weight) hashing over the
// healthy members (Thaler and Ravishankar, 1998). Every member draws a pseudo-random weight for
// the client; the highest weight owns it.
//
// Why not modulo, as Nacos's Distro did (issue #7242): with `hash % n`, going from n to n + 1
// members moves n/(n + 1) of all clients (three quarters from 3 to 4), and every move is a
// takeover with its grace period and a burst of syncs. With rendezvous hashing a new member takes
// only the clients for which it now draws the highest weight, 1/(n + 1) of them, and a member
// that leaves hands over only its own clients; nobody else's owner changes. Unlike a hash ring it
// needs no virtual nodes to balance, and with a handful of members the O(members) cost per lookup
// is a few multiplications.
//
// Every node must compute the same owner from the same member set, so the result depends only on
// the set (not its order) and on hash.ts's exact 32-bit arithmetic. Equal weights (1 in 2^32) go
// to the smaller id.

import { assert } from '../../core/assert.js'
import { SEED_A, hashString, mix32 } from './hash.js'
import type { NodeId } from './types.js'

/** The 32-bit hash of a client id that ownership uses; callers may cache it per client. */
export function clientHash(clientId: string): number {
  return hashString(clientId, SEED_A)
}

/**
 * The owner under a fixed member set, with each member's seed computed once. Build one per
 * membership view and reuse it: ownerOf then costs one string hash plus one mix per member.
 */
export class Ownership {
  /** Sorted, without duplicates. */
  readonly members: readonly NodeId[]
  private readonly seeds: number[]

  constructor(members: Iterable<NodeId>) {
    const sorted = Array.from(new Set(members)).sort()
    for (const m of sorted) assert(m.length > 0, 'a member id is not empty')
    this.members = sorted
    this.seeds = sorted.map((m) => hashString(m, SEED_A))
  }

  /** The responsible member; null when there are no members (a node not yet serving). */
  ownerOf(clientId: string): NodeId | null {
    return this.ownerOfHash(clientHash(clientId))
  }

  /** As ownerOf, from a cached clientHash(clientId). */
  ownerOfHash(h: number): NodeId | null {
    let best = -1
    let bestWeight = -1
    for (let i = 0; i < this.seeds.length; i++) {
      const w = mix32(this.seeds[i]!, h)
      // Strictly greater: on a tie the earlier (smaller) id keeps it, on every node alike.
      if (w > bestWeight) {
        bestWeight = w
        best = i
      }
    }
    return best < 0 ? null : this.members[best]!
  }

  /** Same member set (order and duplicates aside). */
  sameMembers(other: Ownership): boolean {
    if (other.members.length !== this.members.length) return false
    for (let i = 0; i < this.members.length; i++) if (other.members[i] !== this.members[i]) return false
    return true
  }
}

/** The responsible node for a client among the healthy members; null when there are none. */
export function responsibleNode(clientId: string, healthyMembers: Iterable<NodeId>): NodeId | null {
  return new Ownership(healthyMembers).ownerOf(clientId)
}

export interface OwnershipChange {
  readonly clientId: string
  readonly from: NodeId | null
  readonly to: NodeId | null
}

/** The clients whose owner differs between two member views. */
export function ownershipChanges(clientIds: Iterable<string>, before: Ownership, after: Ownership): OwnershipChange[] {
  const out: OwnershipChange[] = []
  if (before.sameMembers(after)) return out
  for (const clientId of clientIds) {
    const h = clientHash(clientId)
    const from = before.ownerOfHash(h)
    const to = after.ownerOfHash(h)
    if (from !== to) out.push({ clientId, from, to })
  }
  return out
}
