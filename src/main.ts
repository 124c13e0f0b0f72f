// The composition root: the only place that creates the real clock, opens LevelDB and listens.
// Settings come from flags, then environment variables, then defaults.

import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { SystemClock } from './core/clock.js'
import { createGraceNode } from './node.js'
import { openDatabase } from './storage/db.js'

const USAGE = `grace: a service registry and configuration center

Usage: grace [options]
  --host HOST        address to listen on       (GRACE_HOST, default 127.0.0.1)
  --port PORT        client port                (GRACE_PORT, default 8848)
  --data-dir DIR     LevelDB data directory     (GRACE_DATA_DIR, default ./data)
  --log-level LEVEL  fatal|error|warn|info|debug|trace|silent (GRACE_LOG_LEVEL, default info)
  --help             this text`

export interface ServerSettings {
  host: string
  port: number
  dataDir: string
  logLevel: string
}

export function readSettings(argv: string[], env: NodeJS.ProcessEnv): ServerSettings {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const port = Number(values.port ?? env.GRACE_PORT ?? 8848)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port: ${values.port ?? env.GRACE_PORT}`)
  const logLevel = values['log-level'] ?? env.GRACE_LOG_LEVEL ?? 'info'
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new Error(`invalid log level: ${logLevel}`)
  return {
    host: values.host ?? env.GRACE_HOST ?? '127.0.0.1',
    port,
    dataDir: resolve(values['data-dir'] ?? env.GRACE_DATA_DIR ?? './data'),
    logLevel,
  }
}

export async function main(argv: string[]): Promise<void> {
  let settings: ServerSettings
  try {
    settings = readSettings(argv, process.env)
  } catch (err) {
    console.error(`grace: ${(err as Error).message}\n\n${USAGE}`)
    process.exit(2)
  }
  // Buffered, so that a line per request is not a write per request; flushed every second and
  // at shutdown. A crash can lose the last second of lines, never data.
  const destination = pino.destination({ dest: 1, sync: false, minLength: 8192 })
  setInterval(() => destination.flush(), 1000).unref()
  const exit = (code: number) => destination.flush(() => process.exit(code))
  process.on('exit', () => {
    try {
      destination.flushSync() // best effort after a crash; a clean stop has flushed already
    } catch {}
  })
  const logger = pino({ level: settings.logLevel }, destination)
  mkdirSync(settings.dataDir, { recursive: true })
  const db = await openDatabase(settings.dataDir)
  const node = await createGraceNode({ db, clock: new SystemClock(), random: Math.random, logger })
  const address = await node.app.listen({ host: settings.host, port: settings.port })
  logger.info({ address, dataDir: settings.dataDir }, 'grace is ready')
  destination.flush()

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down: finishing requests in flight')
    try {
      await node.close()
      await db.close()
      logger.info('stopped')
      exit(0)
    } catch (err) {
      logger.error({ err }, 'shutdown failed')
      exit(1)
    }
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
}
