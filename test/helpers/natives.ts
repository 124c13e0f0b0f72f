// Running a script in a child node with V8's natives syntax (%DebugPrint and friends), for tests
// that check what JavaScript cannot see: an object's shape, a list's spare room, a feedback slot.

import { spawnSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Runs `script`, an ES module, in a fresh node with --allow-natives-syntax and `flags`, and
 * answers what it printed. Without the test runner's NODE_OPTIONS: its preloaded modules would
 * run code of their own in the child. The output goes to a file: V8 prints through C's stdio,
 * which lost the end of its output on a pipe.
 */
export function runWithNatives(script: string, flags: readonly string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'grace-natives-'))
  const out = openSync(join(dir, 'out'), 'w')
  try {
    const child = spawnSync(process.execPath, ['--allow-natives-syntax', ...flags, '--input-type=module', '-e', script], {
      env: { ...process.env, NODE_OPTIONS: '' },
      stdio: ['ignore', out, 'pipe'],
      encoding: 'utf8',
      timeout: 60_000,
    })
    if (child.status !== 0) throw new Error(`child failed (${child.status}): ${child.stderr}`)
    return readFileSync(join(dir, 'out'), 'utf8')
  } finally {
    closeSync(out)
    rmSync(dir, { recursive: true, force: true })
  }
}
