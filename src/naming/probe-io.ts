// The probes themselves: the only part of health checking that touches the network. Each settles
// within the check's timeout with an outcome, and never rejects. The timeout is a real timer:
// it bounds real IO. The scheduler (health-prober.ts) has its own backstop on the injected clock.

import { request } from 'node:http'
import { type Socket, connect } from 'node:net'
import type { ProbeCheck } from './model.js'
import type { ProbeOutcome } from './health-prober.js'

const USER_AGENT = 'grace-health-check/1'

/**
 * Healthy when a TCP connection to ip:port opens within the timeout. The connection is then
 * reset rather than closed: a FIN would leave the probing node with a TIME_WAIT socket per probe,
 * and at thousands of probes a second those use up its ephemeral ports.
 */
export function tcpProbe(ip: string, port: number, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    let settled = false
    const socket: Socket = connect({ host: ip, port })
    const done = (outcome: ProbeOutcome) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (outcome.ok && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy()
      else socket.destroy()
      resolve(outcome)
    }
    const timer = setTimeout(() => done({ ok: false, detail: `no connection within ${timeoutMs} ms` }), timeoutMs)
    socket.once('connect', () => done({ ok: true, detail: 'connected' }))
    // on, not once: a socket may report more than one error, and one unheard would crash the node.
    socket.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, detail: err.code ?? err.message }))
  })
}

/**
 * Healthy when GET http://ip:port/path answers the expected status within the timeout (the whole
 * exchange: connect, request, status line and headers). The body is not read.
 */
export function httpProbe(ip: string, port: number, path: string, expectedStatus: number, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    let settled = false
    const req = request({ host: ip, port, path, method: 'GET', agent: false, headers: { 'user-agent': USER_AGENT, connection: 'close' } })
    const done = (outcome: ProbeOutcome) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      resolve(outcome)
    }
    const timer = setTimeout(() => done({ ok: false, detail: `no answer within ${timeoutMs} ms` }), timeoutMs)
    req.once('response', (res) => {
      const status = res.statusCode ?? 0
      res.on('error', () => {})
      res.destroy()
      done(status === expectedStatus ? { ok: true, detail: `status ${status}` } : { ok: false, detail: `status ${status}, expected ${expectedStatus}` })
    })
    req.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, detail: err.code ?? err.message }))
    req.end()
  })
}

/** The probe a node runs for a check. */
export function probe(ip: string, port: number, check: ProbeCheck): Promise<ProbeOutcome> {
  return check.type === 'tcp' ? tcpProbe(ip, port, check.timeoutMs) : httpProbe(ip, port, check.path, check.expectedStatus, check.timeoutMs)
}
