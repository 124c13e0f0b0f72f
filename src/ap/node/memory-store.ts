// The single-node AP store: client records in a Map. Writes apply at once; nothing is replicated
// yet (Distro will), and nothing survives a restart, which is what ephemeral means: a client that
// is still alive registers again when its next heartbeat is answered "not registered".

import { assert } from '../../core/assert.js'
import type { ClientListener, ClientRecord, EphemeralStore } from '../store.js'

export class MemoryEphemeralStore implements EphemeralStore {
  private readonly records = new Map<string, ClientRecord>()
  private readonly listeners: ClientListener[] = []

  get(clientId: string): ClientRecord | undefined {
    return this.records.get(clientId)
  }

  put(record: ClientRecord): void {
    const prev = this.records.get(record.clientId)
    if (prev && prev.version >= record.version) return
    assert(record.instances.every((i) => i.ephemeral && i.clientId === record.clientId), 'client record holds only its own ephemeral instances')
    this.records.set(record.clientId, record)
    for (const l of this.listeners) l(record.clientId, prev, record)
  }

  remove(clientId: string): void {
    const prev = this.records.get(clientId)
    if (!prev) return
    this.records.delete(clientId)
    for (const l of this.listeners) l(clientId, prev, undefined)
  }

  clients(): IterableIterator<ClientRecord> {
    return this.records.values()
  }

  size(): number {
    return this.records.size
  }

  subscribe(listener: ClientListener): void {
    this.listeners.push(listener)
  }
}
