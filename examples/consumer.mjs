#!/usr/bin/env node
// A consumer: follows a service through Grace and calls one healthy instance every
// INTERVAL_MS, picked by the SDK's balancer. The instance list is kept fresh by push, so an
// instance that deregisters stops being called at once.
//
//   npm run build && GRACE_SERVERS=127.0.0.1:8848 node examples/consumer.mjs
//
// Environment: GRACE_SERVERS, SERVICE (default hello), INTERVAL_MS (default 50). One JSON line
// per call on stdout. The SDK deregisters nothing here (this process registers nothing) and
// exits on SIGTERM.

import { GraceClient } from 'grace-registry/sdk'

const service = process.env.SERVICE ?? 'hello'
const interval = Number(process.env.INTERVAL_MS ?? 50)
const log = (event, fields = {}) => console.log(JSON.stringify({ event, t: Date.now(), ...fields }))

const grace = new GraceClient({ servers: process.env.GRACE_SERVERS ?? '127.0.0.1:8848', cacheDir: false })
await grace.naming.subscribe(service, (e) => log('instances', { count: e.instances.length, ports: e.instances.map((i) => i.port) }))

async function callOne() {
  let target
  try {
    target = await grace.naming.selectOneHealthyInstance(service, { balancer: 'roundRobin' })
  } catch (err) {
    log('none', { code: err.code })
    return
  }
  try {
    const res = await fetch(`http://${target.ip}:${target.port}/`, { signal: AbortSignal.timeout(1000) })
    log('call', { port: target.port, ok: res.ok, body: await res.json() })
  } catch (err) {
    log('call', { port: target.port, ok: false, error: err.cause?.code ?? err.message })
  }
}

const timer = setInterval(() => void callOne(), interval)
process.on('SIGTERM', async () => {
  clearInterval(timer)
  await grace.close()
  process.exit(0)
})
