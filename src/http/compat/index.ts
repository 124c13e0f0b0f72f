// Drop-in APIs of other registries, as adapters over Grace's naming and config services:
// Nacos 1.x under /nacos, Eureka under /eureka (docs/compatibility.md).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
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
  /**
   * Called with every answer of the compat scopes, for the access log. Their own error and 404
   * handlers answer past Grace's (app.ts), so only a hook of theirs sees those answers.
   */
  onAnswer?: (request: FastifyRequest, reply: FastifyReply) => void
}

export function registerCompatRoutes(app: FastifyInstance, deps: CompatDeps): void {
  const onAnswer = deps.onAnswer
  const scoped = onAnswer
    ? (scope: FastifyInstance): void => {
        scope.addHook('onSend', (request, reply, payload, done) => {
          onAnswer(request, reply)
          done(null, payload)
        })
      }
    : undefined
  registerNacos(app, { naming: deps.naming, config: deps.config, ...(deps.clientAddresses ? { servers: deps.clientAddresses } : {}), ...(deps.logger ? { logger: deps.logger } : {}), ...(scoped ? { scoped } : {}) })
  registerEureka(app, { naming: deps.naming, ...(deps.logger ? { logger: deps.logger } : {}), ...(scoped ? { scoped } : {}) })
}
