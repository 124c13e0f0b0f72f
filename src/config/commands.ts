// The config store's CP log commands. A command carries the checked request as plain JSON, since
// log entries are stored as JSON and replayed from it.

import type { CpCommand } from '../cp/log.js'
import type { PublishRequest, RemoveRequest } from './requests.js'

/** The owner prefix CompositeStateMachine routes on. */
export const CONFIG_PREFIX = 'config'

export const PUBLISH = 'config.publish'
export const REMOVE = 'config.remove'

export interface PublishCommand extends CpCommand {
  readonly type: typeof PUBLISH
  readonly request: PublishRequest
}

export interface RemoveCommand extends CpCommand {
  readonly type: typeof REMOVE
  readonly request: RemoveRequest
}

export interface PublishResult {
  readonly md5: string
  readonly revision: number
}

export interface RemoveResult {
  readonly deleted: boolean
}
