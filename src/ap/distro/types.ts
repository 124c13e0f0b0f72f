// The vocabulary of the pure Distro core. Nothing here does IO; the driver (ap/node) moves these
// values between nodes and into the naming views.
//
// The unit of replication is a client (ap/store.ts): a lease and every ephemeral instance it
// published, replaced whole. A client's state travels as a `Versioned`: its latest record, or a
// tombstone saying it was removed at some version. Versions decide every merge (records.ts), so
// deliveries may be reordered, duplicated or late without harm.

import type { ClientRecord } from '../store.js'

/** A node's identity: stable across restarts and address changes (the same ids as Raft's). */
export type NodeId = string

/**
 * A removal that remembers its version. Without it, a delayed sync of an older record would find
 * nothing held and bring a removed client back.
 */
export interface Tombstone {
  readonly clientId: string
  readonly version: number
  readonly removed: true
}

/** A client's state as it travels: the record, or its tombstone. */
export type Versioned = ClientRecord | Tombstone

export function isTombstone(v: Versioned): v is Tombstone {
  return (v as Tombstone).removed === true
}

export function tombstone(clientId: string, version: number): Tombstone {
  return { clientId, version, removed: true }
}
