// docs/errors.md is the user's list of error codes; it must match the registry exactly.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ERROR_CODES } from '../../../src/core/errors.js'

const DOC = join(import.meta.dirname, '..', '..', '..', '..', 'docs', 'errors.md')

t.test('docs/errors.md lists every code with its status, and no other', async (t) => {
  const rows = new Map<string, number>()
  for (const m of readFileSync(DOC, 'utf8').matchAll(/^\|\s*`([A-Z_]+)`\s*\|\s*(\d{3})\s*\|/gm)) rows.set(m[1]!, Number(m[2]))
  const registry = new Map(Object.entries(ERROR_CODES).map(([code, e]) => [code, e.status]))
  t.same([...rows.keys()].sort(), [...registry.keys()].sort(), 'the same codes')
  for (const [code, status] of registry) t.equal(rows.get(code), status, `${code} has status ${status}`)
})
