// Drop-in APIs of other registries, as adapters over Grace's naming and config services:
// Nacos 1.x under /nacos, Eureka under /eureka (docs/compatibility.md).

import type { FastifyInstance } from 'fastify'
import type { ConfigService } from '../../config/service.js'
import type { NamingService } from '../../naming/service.js'
import { registerEureka } from './eureka/index.js'
import { registerNacos } from './nacos/index.js'

export const COMPAT_PREFIXES = ['/nacos/', '/eureka/'] as const

export interface CompatDeps {
  naming: NamingService
  config: ConfigService
  clientAddresses?: () => readonly string[]
  logger?: { error(obj: object, msg: string): void }
}

export function registerCompatRoutes(app: FastifyInstance, deps: CompatDeps): void {
  registerNacos(app, { naming: deps.naming, config: deps.config, ...(deps.clientAddresses ? { servers: deps.clientAddresses } : {}), ...(deps.logger ? { logger: deps.logger } : {}) })
  registerEureka(app, { naming: deps.naming, ...(deps.logger ? { logger: deps.logger } : {}) })
}
