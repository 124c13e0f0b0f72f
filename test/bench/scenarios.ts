// What is measured: the requests of each scenario, and the state Grace needs before a read
// scenario is measured. The roof is sent exactly the same requests.

import type autocannon from 'autocannon'
import { LIMITS } from '../../src/core/limits.js'
import { CONFIG_GET_DATA_ID, QUERY_INSTANCE_COUNT, QUERY_SERVICE, configContent, queryInstance } from './fixtures.js'

export interface Scenario {
  id: string
  title: string
  /** A fresh request list for one autocannon run. Generated bodies keep counting across runs. */
  requests(): autocannon.Request[]
  /** Puts Grace in the state the scenario reads, just before Grace is measured. */
  prepare?(baseUrl: string): Promise<void>
  /** After Grace was measured: a problem that makes the numbers meaningless, or undefined. */
  check?(baseUrl: string): Promise<string | undefined>
}

const JSON_HEADERS = { 'content-type': 'application/json' }

/**
 * Distinct instances per register scenario before the addresses wrap around. Grace refuses more
 * than LIMITS.maxInstancesPerService instances in one service. A wrapped address is registered
 * with another weight (registerScenario), so it is still a change and a full write: registering an
 * ephemeral instance again exactly as it is only renews its lease.
 */
export const DISTINCT_INSTANCES = Math.min(300_000, LIMITS.maxInstancesPerService)

/** The k-th distinct instance address of a register scenario (k < DISTINCT_INSTANCES). */
export function instanceAddress(k: number): { ip: string; port: number } {
  return { ip: `10.0.${(k >> 8) & 255}.${k & 255}`, port: 20_000 + (k >> 16) }
}

/**
 * Distinct registrations of one kind: a new instance (ip:port) each, wrapping after
 * DISTINCT_INSTANCES; each lap over the addresses gives them another weight (1, 2, …, 100, 1, …).
 */
/**
 * `counter`: where the next registration's number comes from. Scenarios that share one never send
 * the same instance with the same weight, so each registration stays a change (a repeat is a
 * renewal: no new revision, nothing to sync).
 */
export function registerScenario(id: string, title: string, service: string, ephemeral: boolean, counter: { next: number } = { next: 0 }): Scenario {
  return {
    id,
    title,
    requests: () => [
      {
        method: 'POST',
        path: '/v1/ns/instances',
        headers: JSON_HEADERS,
        // One counter shared by every connection, so no two requests of a run repeat an instance
        // until DISTINCT_INSTANCES have been registered.
        setupRequest: (request) => {
          const k = counter.next++
          const { ip, port } = instanceAddress(k % DISTINCT_INSTANCES)
          const weight = 1 + (Math.floor(k / DISTINCT_INSTANCES) % 100)
          return { ...request, body: JSON.stringify({ service, ip, port, weight, ephemeral }) }
        },
      },
    ],
  }
}

/** The client id of the k-th heartbeat client (registered beforehand by the benchmark that beats). */
export const beatClient = (k: number): string => `bench-ap-beat-${k}`

/** Heartbeats by clientId, cycling through `clients` clients registered beforehand. */
export function beatScenario(clients: number): Scenario {
  let seq = 0
  return {
    id: 'beat',
    title: 'heartbeat',
    requests: () => [
      {
        method: 'PUT',
        path: '/v1/ns/instances/beat',
        headers: JSON_HEADERS,
        setupRequest: (request) => ({ ...request, body: JSON.stringify({ clientId: beatClient(seq++ % clients) }) }),
      },
    ],
  }
}

function configPublishScenario(): Scenario {
  let seq = 0
  return {
    id: 'config-publish',
    title: 'config publish',
    requests: () => [
      {
        method: 'POST',
        path: '/v1/cs/configs',
        headers: JSON_HEADERS,
        setupRequest: (request) => {
          const n = seq++
          const body = { dataId: `bench-${n % 1000}`, group: 'DEFAULT_GROUP', content: configContent(n) }
          return { ...request, body: JSON.stringify(body) }
        },
      },
    ],
  }
}

export const SCENARIOS: readonly Scenario[] = [
  registerScenario('eph-register', 'ephemeral register', 'bench-eph', true),
  registerScenario('per-register', 'persistent register', 'bench-per', false),
  {
    id: 'query',
    title: `instance query (${QUERY_INSTANCE_COUNT} instances)`,
    requests: () => [{ method: 'GET', path: `/v1/ns/instances?service=${QUERY_SERVICE}` }],
    // Registering again right before each measurement renews the leases: the run may last longer
    // than the 30 s after which an ephemeral instance without heartbeats is removed.
    prepare: async (baseUrl) => {
      for (let i = 0; i < QUERY_INSTANCE_COUNT; i++) await call(baseUrl, 'POST', '/v1/ns/instances', queryInstance(i))
    },
    check: async (baseUrl) => {
      const list = (await call(baseUrl, 'GET', `/v1/ns/instances?service=${QUERY_SERVICE}`)) as { instances?: unknown[] }
      const n = list.instances?.length ?? 0
      return n === QUERY_INSTANCE_COUNT ? undefined : `query answered ${n} instances, expected ${QUERY_INSTANCE_COUNT}`
    },
  },
  configPublishScenario(),
  {
    id: 'config-get',
    title: 'config get',
    requests: () => [{ method: 'GET', path: `/v1/cs/configs?dataId=${CONFIG_GET_DATA_ID}` }],
    prepare: async (baseUrl) => {
      await call(baseUrl, 'POST', '/v1/cs/configs', { dataId: CONFIG_GET_DATA_ID, group: 'DEFAULT_GROUP', content: configContent(1) })
    },
    check: async (baseUrl) => {
      const config = (await call(baseUrl, 'GET', `/v1/cs/configs?dataId=${CONFIG_GET_DATA_ID}`)) as { content?: string }
      return config.content === configContent(1) ? undefined : `config get answered content ${JSON.stringify(config.content)}`
    },
  },
]

/**
 * Sends one request of the scenario outside autocannon and describes the answer: autocannon counts
 * non-2xx answers but does not say what they were.
 */
export async function sampleAnswer(baseUrl: string, scenario: Scenario): Promise<string> {
  const template = scenario.requests()[0]
  if (!template) return 'no request'
  const { setupRequest, ...base } = template
  const req = setupRequest ? (setupRequest({ ...base }, {}) ?? base) : base
  const method = req.method ?? 'GET'
  const res = await fetch(baseUrl + (req.path ?? '/'), {
    method,
    ...(req.headers ? { headers: req.headers } : {}),
    ...(req.body !== undefined ? { body: req.body.toString() } : {}),
    signal: AbortSignal.timeout(10_000),
  })
  return `${method} ${req.path} answered ${res.status} ${(await res.text()).slice(0, 200)}`
}

/** One JSON request; any non-2xx is an error, because the scenario would measure the wrong thing. */
async function call(baseUrl: string, method: string, path: string, body?: object): Promise<unknown> {
  const res = await fetch(baseUrl + path, {
    method,
    ...(body ? { headers: JSON_HEADERS, body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(10_000),
  })
  const text = await res.text()
  if (res.status < 200 || res.status > 299) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 500)}`)
  return text ? JSON.parse(text) : undefined
}
