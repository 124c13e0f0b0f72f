// The design rule that keeps Raft and Distro simulable: their cores import no IO. Time,
// randomness, disk and network come in through interfaces.

import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

const ROOT = join(import.meta.dirname, '..', '..', '..', '..')
// Folders, or single files (the member table's decisions, driven by cluster/membership.ts).
const PURE_CORES = ['src/cp/raft', 'src/ap/distro', 'src/cluster/members.ts']
const FORBIDDEN = /^(node:.*|fs|fs\/promises|net|dgram|http|https|http2|tls|child_process|worker_threads|cluster|os|level|classic-level|abstract-level|fastify|pino)$/

function sourceFiles(dir: string): string[] {
  let names: string[]
  try {
    if (statSync(dir).isFile()) return [dir]
    names = readdirSync(dir)
  } catch {
    return []
  }
  return names.flatMap((n) => {
    const p = join(dir, n)
    return statSync(p).isDirectory() ? sourceFiles(p) : /\.(ts|js|mjs|cjs)(\.txt)?$/.test(n) ? [p] : []
  })
}

/** Every `from '...'`, `import('...')` and `require('...')` specifier that names forbidden IO. */
export function ioImports(dir: string): string[] {
  const found: string[] = []
  for (const file of sourceFiles(dir)) {
    const code = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '')
    for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)) {
      if (FORBIDDEN.test(m[1]!)) found.push(`${file}: ${m[1]}`)
    }
  }
  return found
}

t.test('the checker finds IO imports, and only those', async (t) => {
  const fixtures = join(ROOT, 'test', 'fixtures', 'io-imports')
  const bad = ioImports(join(fixtures, 'bad'))
  t.equal(bad.length, 2, bad.join('\n'))
  t.match(bad.join('\n'), /uses-fs\.ts\.txt: node:fs/)
  t.match(bad.join('\n'), /uses-level\.ts\.txt: level/)
  t.same(ioImports(join(fixtures, 'good')), [])
})

for (const core of PURE_CORES) {
  t.test(`${core} imports no IO`, async (t) => {
    t.same(ioImports(join(ROOT, core)), [], `${core} must take clock, disk and network through interfaces`)
  })
}
