// The CP state machine of a node: one log, several owners of the data. Each command's type
// starts with its owner's prefix ("naming.", "config."), and apply routes it there.

import { fail } from '../core/errors.js'
import type { LogEntry, StateMachine } from '../cp/log.js'
import type { BatchOp } from '../storage/db.js'

export class CompositeStateMachine implements StateMachine {
  constructor(private readonly parts: Readonly<Record<string, StateMachine>>) {}

  async load(): Promise<void> {
    for (const part of Object.values(this.parts)) await part.load()
  }

  apply(entry: LogEntry, ops: BatchOp[]): unknown {
    const type = entry.command.type
    const part = this.parts[type.slice(0, type.indexOf('.'))]
    // Unknown commands are rejected, not fatal: a newer node may have proposed one.
    if (!part) fail('INVALID_ARGUMENT', `unknown command type ${type}`)
    return part.apply(entry, ops)
  }
}
