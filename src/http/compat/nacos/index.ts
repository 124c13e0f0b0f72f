// The Nacos 1.x open API under /nacos: naming, config, namespaces and the server list, in one
// fastify scope with its own form-body parser and Nacos-style text errors (docs/compatibility.md).

import type { FastifyInstance } from 'fastify'
import { GraceError } from '../../../core/errors.js'
import type { ConfigService } from '../../../config/service.js'
import type { NamingService } from '../../../naming/service.js'
import { addFormParser, sendJson, sendText, setTextErrors } from '../params.js'
import { registerNacosConfig } from './config.js'
import { registerNacosNaming } from './naming.js'

export interface NacosDeps {
  naming: NamingService
  config: ConfigService
  /** host:port of every node clients may use; empty or absent: this node's own address. */
  servers?: () => readonly string[]
  logger?: { error(obj: object, msg: string): void }
  /** Called with the scope first (compat/index.ts: the access log's hook). */
  scoped?: (scope: FastifyInstance) => void
}

export function registerNacos(app: FastifyInstance, deps: NacosDeps): void {
  app.register(
    async (scope) => {
      deps.scoped?.(scope)
      addFormParser(scope)
      // Nacos's ResponseExceptionHandler answers "caused: <message>;" with the status.
      setTextErrors(scope, (err) => `caused: ${err.message};`, deps.logger)
      scope.setNotFoundHandler((request, reply) => sendText(reply, 404, `caused: no route ${request.method} ${request.url.split('?')[0]};`))

      let selfAddress = ''
      scope.addHook('onRequest', (request, _reply, done) => {
        if (!selfAddress && request.socket?.localPort) selfAddress = `${hostOf(request.socket.localAddress)}:${request.socket.localPort}`
        done()
      })
      const servers = (): readonly string[] => {
        const known = deps.servers?.() ?? []
        return known.length > 0 ? known : selfAddress ? [selfAddress] : []
      }

      registerNacosNaming(scope, { naming: deps.naming, servers })
      registerNacosConfig(scope, deps.config)

      scope.get('/v1/console/namespaces', async (_request, reply) => {
        const configs = deps.config.countsByNamespace()
        const names = new Set<string>(['public', ...deps.naming.stats().namespaces, ...configs.keys()])
        const data = [...names]
          .sort((a, b) => (a === 'public' ? -1 : b === 'public' ? 1 : a < b ? -1 : 1))
          .map((ns) => ({
            namespace: ns === 'public' ? '' : ns,
            namespaceShowName: ns,
            namespaceDesc: null,
            quota: 200,
            configCount: configs.get(ns) ?? 0,
            type: ns === 'public' ? 0 : 2,
          }))
        return sendJson(reply, { code: 200, message: null, data })
      })

      // Endpoint (address server) mode: clients fetch this list and pick a node from it.
      const serverList = async (_request: unknown, reply: import('fastify').FastifyReply) => {
        const list = servers()
        if (list.length === 0) throw new GraceError('UNAVAILABLE', 'no server address known yet')
        return sendText(reply, 200, list.join('\r\n'))
      }
      scope.get('/serverlist', serverList)
    },
    { prefix: '/nacos' },
  )
}

function hostOf(address: string | undefined): string {
  if (!address) return '127.0.0.1'
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address
  return v4.includes(':') ? `[${v4}]` : v4
}
