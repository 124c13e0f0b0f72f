// The consistency proxy: every write passes here, and the kind of the data picks the protocol.
// Persistent data (instances registered with ephemeral: false, service metadata, configs) goes
// through the CP log and is acknowledged once durable. Ephemeral data (client records with their
// instances) goes to the AP store, applied locally at once and replicated in the background.

import type { ClientRecord, EphemeralStore } from '../ap/store.js'
import type { CpCommand, ReplicatedLog } from '../cp/log.js'

export class ConsistencyProxy {
  constructor(
    private readonly cp: ReplicatedLog,
    private readonly ap: EphemeralStore,
  ) {}

  /** CP: resolves with the state machine's result once the command is durable and applied. */
  writeDurable(command: CpCommand): Promise<unknown> {
    return this.cp.propose(command)
  }

  /** CP: resolves once local state has every acknowledged write, for a linearizable read. */
  durableReadBarrier(): Promise<void> {
    return this.cp.readBarrier()
  }

  /** AP: stores a client's new record. */
  writeEphemeral(record: ClientRecord): void {
    this.ap.put(record)
  }

  /** AP: removes a client and every instance it holds. */
  removeEphemeral(clientId: string): void {
    this.ap.remove(clientId)
  }

  readEphemeral(clientId: string): ClientRecord | undefined {
    return this.ap.get(clientId)
  }
}
