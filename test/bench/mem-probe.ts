// A preload for the servers of the AP benchmark's memory phase (`node --expose-gc --import
// <this file> bin/grace.js ...`): on SIGUSR2 it runs a full garbage collection and writes
// process.memoryUsage() to $GRACE_BENCH_MEM_DIR/mem-<pid>.json. Grace has no endpoint that tells
// its heap size; this adds none to Grace and does nothing until the signal comes.

import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.env.GRACE_BENCH_MEM_DIR
if (dir) {
  process.on('SIGUSR2', () => {
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    const m = process.memoryUsage()
    const sample = { at: Date.now(), gc: gc !== undefined, rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers }
    // Written aside, then renamed: the reader never sees half a file.
    const path = join(dir, `mem-${process.pid}.json`)
    writeFileSync(`${path}.tmp`, JSON.stringify(sample))
    renameSync(`${path}.tmp`, path)
  })
}
