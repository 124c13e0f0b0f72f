#!/usr/bin/env node
// A provider: serves HTTP, registers itself with Grace, and on SIGTERM or SIGINT deregisters
// first, lets calls in flight finish, then exits.
//
//   npm run build && GRACE_SERVERS=127.0.0.1:8848 node examples/provider.mjs
//
// Environment: GRACE_SERVERS (comma-separated), SERVICE (default hello), PORT (default: any
// free port), DRAIN_MS (time between deregistering and closing, default 300). One JSON line per event on stdout.

import { createServer } from 'node:http'
import { GraceClient } from 'grace-registry/sdk'

const service = process.env.SERVICE ?? 'hello'
const drainMs = Number(process.env.DRAIN_MS ?? 300)
const log = (event, fields = {}) => console.log(JSON.stringify({ event, t: Date.now(), ...fields }))

const server = createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ hello: 'world', from: server.address().port, pid: process.pid }))
})
await new Promise((resolve) => server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve))
const port = server.address().port

// This process handles the signals itself (below), so it turns the SDK's own handler off.
const grace = new GraceClient({ servers: process.env.GRACE_SERVERS ?? '127.0.0.1:8848', deregisterOnExit: false, cacheDir: false })
await grace.naming.registerInstance(service, { ip: '127.0.0.1', port, metadata: { version: '1.0' } })
log('registered', { service, port, clientId: grace.naming.clientId })

let stopping = false
async function shutdown(signal) {
  if (stopping) return
  stopping = true
  log('stopping', { signal })
  // Out of the registry first: consumers hear of it by push and stop calling.
  await grace.close({ deregister: true })
  log('deregistered')
  // Consumers learn of it within milliseconds; a call they started just before is still
  // answered during a short drain, then the server closes.
  await new Promise((resolve) => setTimeout(resolve, drainMs))
  server.close(() => {
    log('stopped')
    process.exit(0)
  })
  server.closeIdleConnections()
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
