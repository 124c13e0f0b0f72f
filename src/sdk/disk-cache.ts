// The last known instance lists and configs on disk, for when no server answers (a restart of
// the application while the registry is down included). One JSON file per entry, named by the
// md5 of its key (names can be 512 bytes, too long for a file name), written to a temporary file
// and renamed, so a crash never leaves half a file. Failures to write are logged and otherwise
// ignored: the cache is a fallback, never a reason to fail a call.

import { createHash } from 'node:crypto'
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { SdkLogger } from './logger.js'

/** Files kept per kind (naming, config) and namespace; the oldest go past it. */
export const MAX_CACHE_FILES = 10_000
/** One entry at most: a 50,000-instance list is about this size. */
export const MAX_CACHE_FILE_BYTES = 64 * 1024 * 1024

export class DiskCache {
  private readonly dir: string
  private ready: Promise<void> | undefined
  private writes = 0

  constructor(
    root: string,
    kind: 'naming' | 'config',
    namespace: string,
    private readonly logger: SdkLogger,
  ) {
    this.dir = join(root, kind, digest(namespace))
  }

  async write(key: string, value: unknown): Promise<void> {
    try {
      this.ready ??= mkdir(this.dir, { recursive: true }).then(() => undefined)
      await this.ready
      const text = JSON.stringify({ key, savedAt: Date.now(), value })
      if (Buffer.byteLength(text) > MAX_CACHE_FILE_BYTES) return
      const file = join(this.dir, fileName(key))
      const tmp = `${file}.${process.pid}.${++this.writes}.tmp`
      await writeFile(tmp, text)
      await rename(tmp, file)
      if (this.writes % 100 === 0) await this.prune()
    } catch (err) {
      this.logger.warn({ dir: this.dir, err: (err as Error).message }, 'grace: cannot write the disk cache')
    }
  }

  /** The value saved under key, with when it was saved; undefined if none (or unreadable). */
  async read<T>(key: string): Promise<{ value: T; savedAt: number } | undefined> {
    try {
      const text = await readFile(join(this.dir, fileName(key)), 'utf8')
      const entry = JSON.parse(text) as { key: string; savedAt: number; value: T }
      return entry.key === key ? { value: entry.value, savedAt: entry.savedAt } : undefined
    } catch {
      return undefined
    }
  }

  async remove(key: string): Promise<void> {
    await rm(join(this.dir, fileName(key)), { force: true }).catch(() => undefined)
  }

  private async prune(): Promise<void> {
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.json'))
    if (names.length <= MAX_CACHE_FILES) return
    const aged = await Promise.all(names.map(async (n) => ({ n, t: (await stat(join(this.dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })))
    aged.sort((a, b) => a.t - b.t)
    for (const { n } of aged.slice(0, names.length - MAX_CACHE_FILES)) await rm(join(this.dir, n), { force: true })
  }
}

function digest(key: string): string {
  return createHash('md5').update(key).digest('hex')
}

function fileName(key: string): string {
  return `${digest(key)}.json`
}
