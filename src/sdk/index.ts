// Grace's client SDK: `import { GraceClient } from 'grace-registry/sdk'`.

import { ConfigClient } from './config-client.js'
import { NamingClient } from './naming-client.js'
import type { ClientOptions } from './options.js'
import { Session } from './session.js'

export * from './balancers/index.js'
export { ConfigClient, type ConfigChangeEvent, type ConfigListener, type ConfigRef, MAX_LISTENED_CONFIGS, contentMd5 } from './config-client.js'
export { GraceClientError, type ClientErrorCode } from './errors.js'
export { type SdkLogger, silentSdkLogger, stderrLogger } from './logger.js'
export {
  type Instance,
  type InstanceSpec,
  type LookupOptions,
  MAX_SUBSCRIPTIONS,
  NamingClient,
  type ServiceChangeEvent,
  type ServiceListener,
  type ServiceSelector,
} from './naming-client.js'
export { type ClientOptions, type ResolvedOptions, loadClientOptions, resolveOptions } from './options.js'
export { Session } from './session.js'

/** A naming client and a config client sharing one server list and its failover state. */
export class GraceClient {
  readonly naming: NamingClient
  readonly config: ConfigClient

  constructor(options: ClientOptions | Session = {}) {
    const session = options instanceof Session ? options : new Session(options)
    this.naming = new NamingClient(session)
    this.config = new ConfigClient(session)
  }

  /** Options from a file (grace.json, grace.yaml; $GRACE_CLIENT_CONFIG), overridden by `overrides`. */
  static async fromFile(path?: string, overrides: ClientOptions = {}): Promise<GraceClient> {
    return new GraceClient(await Session.fromFile(path, overrides))
  }

  /** Closes both; deregisters this process's instances unless `deregister: false`. */
  async close(opts: { deregister?: boolean } = {}): Promise<void> {
    await Promise.all([this.naming.close(opts), this.config.close()])
  }
}
