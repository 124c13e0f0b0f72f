// A Grace node for tests: a LevelDB in a fresh temporary directory and a ManualClock, driven
// through fastify's inject(). reopen() simulates a restart on the same data.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import type { Logger as PinoLogger } from 'pino'
import { type Clock, ManualClock } from '../../src/core/clock.js'
import { type GraceNode, createGraceNode } from '../../src/node.js'
import { type Database, openDatabase } from '../../src/storage/db.js'

export interface TestNode {
  node: GraceNode
  db: Database
  clock: ManualClock
  dir: string
  /** JSON request; `body` objects are sent as JSON. */
  call(method: InjectOptions['method'], url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  /** Closes node and database, then opens both again on the same directory. */
  reopen(): Promise<TestNode>
  close(): Promise<void>
}

export async function startTestNode(opts: { dir?: string; clock?: ManualClock; logger?: PinoLogger } = {}): Promise<TestNode> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'grace-test-'))
  const clock = opts.clock ?? new ManualClock()
  const db = await openDatabase(dir)
  const node = await createGraceNode({ db, clock: clock as Clock, random: Math.random, ...(opts.logger ? { logger: opts.logger } : {}) })
  const self: TestNode = {
    node,
    db,
    clock,
    dir,
    call(method, url, body, headers = {}) {
      const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body)
      const contentType = payload !== undefined && !('content-type' in headers) ? { 'content-type': 'application/json' } : {}
      return node.app.inject({ method, url, headers: { ...contentType, ...headers }, ...(payload !== undefined ? { payload } : {}) })
    },
    async reopen() {
      await node.close()
      await db.close()
      return startTestNode({ dir, clock, ...(opts.logger ? { logger: opts.logger } : {}) })
    },
    async close() {
      await node.close()
      await db.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return self
}
