#!/usr/bin/env node
// Generates the protobuf code in src/gen/ from proto/ with pbjs and pbts (protobufjs-cli).
// The output is never edited by hand and not committed: `npm run build` runs this first.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const bin = (name) => join(root, 'node_modules', '.bin', name)

function protoFiles(dir) {
  const out = []
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...protoFiles(path))
    else if (name.endsWith('.proto')) out.push(relative(protoRoot, path))
  }
  return out
}

const protoRoot = join(root, 'proto')
// Paths relative to proto/, as the imports name them, so no file is loaded twice.
const files = protoFiles(protoRoot)
const outDir = join(root, 'src', 'gen')
mkdirSync(outDir, { recursive: true })
const js = join(outDir, 'proto.js')
// --force-number: 64-bit fields decode as JS numbers (revisions and indexes stay below 2^53).
execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'es6', '--es6', '--force-number',
  '--no-verify', '--no-delimited', '--no-beautify', '-o', js, ...files],
  { cwd: protoRoot, stdio: 'inherit' })
execFileSync(bin('pbts'), ['--no-comments', '-o', join(outDir, 'proto.d.ts'), js], { cwd: root, stdio: 'inherit' })
console.log(`gen-proto: ${files.length} files -> ${relative(root, outDir)}/proto.{js,d.ts}`)
