// The vocabulary of the pure Distro core. Nothing here does IO; the driver (ap/node) moves these
// values between nodes and into the naming views.
//
// The unit of replication is a client (ap/store.ts): a lease and every ephemeral instance it
// published. A client's state travels as a `Versioned`: its record (each instance stamped with the
// version that last wrote it, plus the instances removed since), or a tombstone saying it was
// removed at some version. Merging two states keeps, per instance, the newest write
// (records.ts), so deliveries may be reordered, duplicated or late without harm, and two nodes
// that wrote the same client concurrently (across a partition) keep both writes.

import type { ClientRecord } from '../store.js'

/** A node's identity: stable across restarts and address changes (the same ids as Raft's). */
export type NodeId = string

/**
 * A removal that remembers its version. Without it, a delayed sync of an older record would find
 * nothing held and bring a removed client back. Everything stamped at or below `version` is gone.
 * A tombstone that a merge produced can also remember instances removed after that (a record's
 * removals, newest first): dropping them would let the merge's result depend on its order.
 */
export interface Tombstone {
  readonly clientId: string
  readonly version: number
  readonly removed: true
  readonly removals?: readonly InstanceRemoval[]
}

/** An instance removed from a client that lives on: its key (records.ts instanceKey) and the removal's version. */
export interface InstanceRemoval {
  readonly key: string
  readonly version: number
}

/**
 * A client record as Distro holds it. The extra fields are optional so that a plain ClientRecord
 * (from the naming layer, or an older peer) reads as "every instance written at `version`,
 * nothing removed, no floor".
 */
export interface ClientState extends ClientRecord {
  /** stamps[i] is the version of the write that last changed instances[i]; each <= version. */
  readonly stamps?: readonly number[]
  /** Instances removed while the client lived on, newest first, at most DISTRO_LIMITS.maxRemovalsPerClient. */
  readonly removals?: readonly InstanceRemoval[]
  /** The client was removed at this version and registered again: anything stamped at or below it is gone. */
  readonly floor?: number
}

/** A client's state as it travels: the record, or its tombstone. */
export type Versioned = ClientState | Tombstone

export function isTombstone(v: Versioned): v is Tombstone {
  return (v as Tombstone).removed === true
}

export function tombstone(clientId: string, version: number, removals?: readonly InstanceRemoval[]): Tombstone {
  return removals === undefined || removals.length === 0 ? { clientId, version, removed: true } : { clientId, version, removed: true, removals }
}
