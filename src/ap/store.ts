// The AP path's contract. Today an in-memory store on one node implements it
// (ap/node/memory-store.ts); Distro will implement the same interface across the cluster.
//
// The unit of replication is a client: a lease holder and every ephemeral instance it
// registered. A record is replaced whole, and its version only grows, so that a stale or
// duplicated copy can never overwrite a newer one.

import type { Instance } from '../naming/model.js'

export interface ClientRecord {
  readonly clientId: string
  /** Grows with every change the responsible node makes to this client. */
  readonly version: number
  readonly instances: readonly Instance[]
}

/** Called after a client's record changed; prev or next is undefined for an add or a removal. */
export type ClientListener = (clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined) => void

export interface EphemeralStore {
  get(clientId: string): ClientRecord | undefined
  /** Stores the record, applied locally at once, if its version is newer than the one held. */
  put(record: ClientRecord): void
  remove(clientId: string): void
  clients(): IterableIterator<ClientRecord>
  size(): number
  /** Listeners run synchronously, in registration order, after each change. */
  subscribe(listener: ClientListener): void
}
