// The CP workload: concurrent clients read and write configs (publish, compare-and-set, delete,
// get) and persistent instances (register, deregister, list), each call sent to a node picked at
// random, and every call recorded with its invocation, its completion and its outcome, as the
// project's linearizability checker (test/sim/linearizability.ts) reads histories.
//
// Every key is a register: a config's value is its content; a persistent instance's value is the
// tag in its metadata (absent: null). Every write carries a value never written before, so a read
// says exactly which write it saw. A list of the service's instances is one read of every
// instance key, checked key by key (a weaker check than one atomic read of all, never a wrong one).
//
// Outcomes: a 2xx, or an answer that says what the state was (409 CAS_MISMATCH, 404 of a get), is
// ok; a refused connection is fail (the request never reached a server); anything else (a
// timeout, a reset, a 503, which the API documents as "outcome unknown") is unknown: the write may
// have happened, then or later.

import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { HistoryOp, KvInput, Outcome } from '../sim/linearizability.js'
import type { Random } from '../sim/random.js'

const GROUP = 'chaos'
const SERVICE = 'chaos-cp'
const CALL_TIMEOUT_MS = 5_000
const CONFIG_KEYS = ['cfg-a', 'cfg-b', 'cfg-c']
const INSTANCE_IPS = ['10.1.0.1', '10.1.0.2', '10.1.0.3']
/** Pause between one client's calls: the history stays small enough to check. */
const THINK_MS: readonly [number, number] = [5, 60]

export interface Unexpected {
  readonly what: string
  readonly status: number
  readonly body: string
  readonly atMs: number
}

type Call = { status: number; body: any } | { error: string }

export class CpWorkload {
  readonly history: HistoryOp[] = []
  /** Answers that are neither success nor a documented failure: a workload bug or a server bug. */
  readonly unexpected: Unexpected[] = []
  private stamp = 0
  private opId = 0
  private valueId = 0
  private running = false
  private loops: Promise<void>[] = []

  constructor(
    private readonly urls: () => string[],
    private readonly rng: Random,
    private readonly startedAt: number,
    private readonly clients: number,
  ) {}

  /** Creates the persistent service the instances live in. */
  async setUp(url: string): Promise<void> {
    const r = await call(url, 'POST', '/v1/ns/services', { group: GROUP, service: SERVICE, ephemeral: false })
    if ('error' in r || (r.status !== 200 && r.body?.code !== 'SERVICE_ALREADY_EXISTS')) throw new Error(`cannot create ${SERVICE}: ${JSON.stringify(r)}`)
  }

  start(): void {
    this.running = true
    for (let c = 0; c < this.clients; c++) this.loops.push(this.loop(c, this.rng.fork()))
  }

  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.loops)
  }

  /** After the faults: a read of every key on every node, the last word of the history. */
  async finalReads(urls: readonly string[]): Promise<void> {
    for (const url of urls) {
      for (const key of CONFIG_KEYS) await this.getConfig(-1, url, key)
      await this.listInstances(-1, url)
    }
  }

  get keys(): string[] {
    return [...CONFIG_KEYS.map((k) => `config/${k}`), ...INSTANCE_IPS.map((ip) => `instance/${ip}`)]
  }

  private async loop(client: number, rng: Random): Promise<void> {
    const lastSeen = new Map<string, string | null>()
    while (this.running) {
      const url = rng.pick(this.urls())
      const r = rng.float()
      if (r < 0.3) {
        const v = await this.getConfig(client, url, rng.pick(CONFIG_KEYS))
        if (v) lastSeen.set(v.key, v.value)
      } else if (r < 0.45) await this.putConfig(client, url, rng.pick(CONFIG_KEYS))
      else if (r < 0.6) {
        const key = rng.pick(CONFIG_KEYS)
        await this.casConfig(client, url, key, lastSeen.get(key) ?? null)
      } else if (r < 0.65) await this.deleteConfig(client, url, rng.pick(CONFIG_KEYS))
      else if (r < 0.8) await this.listInstances(client, url)
      else if (r < 0.92) await this.register(client, url, rng.pick(INSTANCE_IPS))
      else await this.deregister(client, url, rng.pick(INSTANCE_IPS))
      await sleep(rng.int(THINK_MS[0], THINK_MS[1]))
    }
  }

  private nextValue(client: number): string {
    return `v${++this.valueId}-c${client}`
  }

  /** Runs one call and records it as one or more operations (a list is a read of every key). */
  private async record(client: number, inputs: KvInput[], send: () => Promise<Call>, judge: (r: Call) => { outcome: Outcome; outputs?: (string | null | boolean)[] }): Promise<{ outcome: Outcome; outputs?: (string | null | boolean)[] }> {
    const invoke = ++this.stamp
    const invokeTime = Date.now() - this.startedAt
    const r = await send()
    const complete = ++this.stamp
    const completeTime = Date.now() - this.startedAt
    const verdict = judge(r)
    inputs.forEach((input, i) => {
      this.history.push({
        id: ++this.opId,
        client,
        input,
        invoke,
        complete,
        outcome: verdict.outcome,
        ...(verdict.outputs ? { output: verdict.outputs[i]! } : {}),
        invokeTime,
        completeTime,
      })
    })
    return verdict
  }

  /** The outcome of an answer that is not one the operation expects. */
  private otherwise(what: string, r: Call): { outcome: Outcome } {
    if ('error' in r) return { outcome: r.error === 'ECONNREFUSED' ? 'fail' : 'unknown' }
    if (r.status >= 500) return { outcome: 'unknown' }
    // A 4xx changes nothing (docs/errors.md), but this workload sends only valid requests.
    this.unexpected.push({ what, status: r.status, body: JSON.stringify(r.body).slice(0, 300), atMs: Date.now() - this.startedAt })
    return { outcome: 'fail' }
  }

  private async getConfig(client: number, url: string, dataId: string): Promise<{ key: string; value: string | null } | null> {
    const key = `config/${dataId}`
    const v = await this.record(
      client,
      [{ kind: 'get', key }],
      () => call(url, 'GET', `/v1/cs/configs?group=${GROUP}&dataId=${dataId}`),
      (r) => {
        if (!('error' in r) && r.status === 200) return { outcome: 'ok', outputs: [r.body.content] }
        if (!('error' in r) && r.status === 404 && r.body?.code === 'CONFIG_NOT_FOUND') return { outcome: 'ok', outputs: [null] }
        return this.otherwise(`get ${dataId}`, r)
      },
    )
    return v.outcome === 'ok' ? { key: dataId, value: v.outputs![0] as string | null } : null
  }

  private async putConfig(client: number, url: string, dataId: string): Promise<void> {
    const value = this.nextValue(client)
    await this.record(
      client,
      [{ kind: 'put', key: `config/${dataId}`, value }],
      () => call(url, 'POST', '/v1/cs/configs', { group: GROUP, dataId, content: value }),
      (r) => (!('error' in r) && r.status === 200 ? { outcome: 'ok' } : this.otherwise(`publish ${dataId}`, r)),
    )
  }

  private async casConfig(client: number, url: string, dataId: string, expect: string | null): Promise<void> {
    const value = this.nextValue(client)
    const casMd5 = expect === null ? '' : createHash('md5').update(expect).digest('hex')
    await this.record(
      client,
      [{ kind: 'cas', key: `config/${dataId}`, expect, value }],
      () => call(url, 'POST', '/v1/cs/configs', { group: GROUP, dataId, content: value, casMd5 }),
      (r) => {
        if (!('error' in r) && r.status === 200) return { outcome: 'ok', outputs: [true] }
        if (!('error' in r) && r.status === 409 && r.body?.code === 'CAS_MISMATCH') return { outcome: 'ok', outputs: [false] }
        return this.otherwise(`cas ${dataId}`, r)
      },
    )
  }

  private async deleteConfig(client: number, url: string, dataId: string): Promise<void> {
    await this.record(
      client,
      [{ kind: 'put', key: `config/${dataId}`, value: null }],
      () => call(url, 'DELETE', `/v1/cs/configs?group=${GROUP}&dataId=${dataId}`),
      (r) => (!('error' in r) && r.status === 200 ? { outcome: 'ok' } : this.otherwise(`delete ${dataId}`, r)),
    )
  }

  private async register(client: number, url: string, ip: string): Promise<void> {
    const value = this.nextValue(client)
    await this.record(
      client,
      [{ kind: 'put', key: `instance/${ip}`, value }],
      () => call(url, 'POST', '/v1/ns/instances', { group: GROUP, service: SERVICE, ip, port: 8080, ephemeral: false, metadata: { tag: value } }),
      (r) => (!('error' in r) && r.status === 200 ? { outcome: 'ok' } : this.otherwise(`register ${ip}`, r)),
    )
  }

  private async deregister(client: number, url: string, ip: string): Promise<void> {
    await this.record(
      client,
      [{ kind: 'put', key: `instance/${ip}`, value: null }],
      () => call(url, 'DELETE', `/v1/ns/instances?group=${GROUP}&service=${SERVICE}&ip=${ip}&port=8080`),
      (r) => (!('error' in r) && r.status === 200 ? { outcome: 'ok' } : this.otherwise(`deregister ${ip}`, r)),
    )
  }

  private async listInstances(client: number, url: string): Promise<void> {
    await this.record(
      client,
      INSTANCE_IPS.map((ip) => ({ kind: 'get', key: `instance/${ip}` })),
      () => call(url, 'GET', `/v1/ns/instances?group=${GROUP}&service=${SERVICE}`),
      (r) => {
        if ('error' in r || r.status !== 200) return this.otherwise('list instances', r)
        const tags = new Map<string, string>((r.body.instances as { ip: string; metadata: Record<string, string> }[]).map((i) => [i.ip, i.metadata.tag!]))
        return { outcome: 'ok', outputs: INSTANCE_IPS.map((ip) => tags.get(ip) ?? null) }
      },
    )
  }
}

/** One HTTP call with a JSON body; network errors come back as their code, not thrown. */
export async function call(url: string, method: string, path: string, body?: unknown, timeoutMs = CALL_TIMEOUT_MS): Promise<Call> {
  try {
    const res = await fetch(`${url}${path}`, {
      method,
      ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    })
    const text = await res.text()
    let parsed: unknown
    try {
      parsed = text ? JSON.parse(text) : undefined
    } catch {
      parsed = text
    }
    return { status: res.status, body: parsed }
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string } }
    return { error: e.name === 'TimeoutError' ? 'TIMEOUT' : (e.cause?.code ?? e.name ?? 'ERROR') }
  }
}

