#!/usr/bin/env node
// `npm run cluster`: three Grace nodes on 127.0.0.1 (client ports 8848, 8858, 8868; peer ports
// 9848, 9858, 9868), each with its own data directory under ./data/cluster. Ctrl-C stops them
// all; running it again restarts them on their data. The cluster secret is generated once and
// kept in ./data/cluster/secret (mode 0600): there is no default secret.

import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
const base = resolve(process.env.GRACE_CLUSTER_DIR ?? join(root, 'data', 'cluster'))
const nodes = [
  { id: 'n1', client: 8848, peer: 9848 },
  { id: 'n2', client: 8858, peer: 9858 },
  { id: 'n3', client: 8868, peer: 9868 },
]
mkdirSync(base, { recursive: true })
const secretFile = join(base, 'secret')
if (!existsSync(secretFile)) writeFileSync(secretFile, randomBytes(24).toString('base64url'), { mode: 0o600 })
const secret = readFileSync(secretFile, 'utf8').trim()
const members = nodes.map((n) => `${n.id}=127.0.0.1:${n.peer}`).join(',')

const children = nodes.map((n) => {
  const log = createWriteStream(join(base, `${n.id}.log`), { flags: 'a' })
  const child = spawn(
    process.execPath,
    [join(root, 'bin', 'grace.js'), '--host', '127.0.0.1', '--port', String(n.client), '--data-dir', join(base, n.id), '--node-id', n.id, '--members', members],
    { env: { ...process.env, GRACE_CLUSTER_SECRET: secret }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  child.stdout.pipe(log)
  child.stderr.on('data', (d) => process.stderr.write(`[${n.id}] ${d}`))
  child.on('exit', (code, signal) => {
    console.log(`${n.id} exited (${signal ?? code})`)
    if (!stopping) stop()
  })
  return child
})

console.log(`Grace cluster of ${nodes.length}, data under ${base}:`)
for (const n of nodes) console.log(`  ${n.id}  http://127.0.0.1:${n.client}   peer 127.0.0.1:${n.peer}   log ${join(base, `${n.id}.log`)}`)
console.log('Ctrl-C stops all three.')

let stopping = false
function stop() {
  if (stopping) return
  stopping = true
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  const force = setTimeout(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')), 15_000)
  force.unref()
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
