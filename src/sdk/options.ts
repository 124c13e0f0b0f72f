// Client options: from code, from a file (grace.json, grace.yaml or grace.yml), or both (code
// wins). Every value is checked, unknown keys included, so that a typo in a file is an error at
// start rather than a default silently taken.

import { readFile } from 'node:fs/promises'
import { homedir, hostname } from 'node:os'
import { extname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { BALANCER_NAMES, type BalancerName } from './balancers/index.js'
import { GraceClientError } from './errors.js'
import type { SdkLogger } from './logger.js'

export interface ClientOptions {
  /** Grace servers: "host:port" or "http://host:port", as an array or comma-separated. Default 127.0.0.1:8848. */
  servers?: string | readonly string[]
  namespace?: string
  /** Default group of services and configs. */
  group?: string
  /** This process's cluster: the default of registrations, and the preferred cluster of clusterAffinity. */
  cluster?: string
  /** Defaults of registrations. */
  weight?: number
  metadata?: Record<string, string>
  /** false: registrations are persistent by default. */
  ephemeral?: boolean
  /** The lease of this process's ephemeral instances. Default "<hostname>-<pid>-<random>". */
  clientId?: string
  /** One request to one server. Default 3000. */
  requestTimeoutMs?: number
  /** How long the server holds a watch or a config listen. Default 30000. */
  longPollTimeoutMs?: number
  /** Subscribed services are read again this often, in case a push was missed. Default 30000. */
  refreshIntervalMs?: number
  /** The member list is read from the cluster this often. Default 30000; 0: never. */
  memberRefreshMs?: number
  /** Servers tried for one request before giving up. Default: every known server, at most 8. */
  maxAttempts?: number
  /** Last known instances and configs, for when no server answers. Default ~/.grace/cache; false: none. */
  cacheDir?: string | false
  /** Deregister everything on SIGTERM and SIGINT before the process exits. Default true. */
  deregisterOnExit?: boolean
  /** selectOneHealthyInstance's default balancer. Default weightedRandom. */
  balancer?: BalancerName
  /** Where the SDK logs. Default: warnings and errors to stderr. */
  logger?: SdkLogger
}

export interface ResolvedOptions {
  readonly servers: readonly string[]
  readonly namespace: string
  readonly group: string
  readonly cluster: string
  readonly weight: number
  readonly metadata: Readonly<Record<string, string>>
  readonly ephemeral: boolean
  readonly clientId: string
  readonly requestTimeoutMs: number
  readonly longPollTimeoutMs: number
  readonly refreshIntervalMs: number
  readonly memberRefreshMs: number
  readonly maxAttempts: number
  readonly cacheDir: string | false
  readonly deregisterOnExit: boolean
  readonly balancer: BalancerName
  readonly logger: SdkLogger | undefined
}

/** Servers in one client, at most; more are ignored (learned ones) or refused (given ones). */
export const MAX_SERVERS = 64
const MAX_TIMEOUT_MS = 600_000

const KEYS = new Set([
  'servers', 'namespace', 'group', 'cluster', 'weight', 'metadata', 'ephemeral', 'clientId', 'requestTimeoutMs', 'longPollTimeoutMs',
  'refreshIntervalMs', 'memberRefreshMs', 'maxAttempts', 'cacheDir', 'deregisterOnExit', 'balancer', 'logger',
])

function bad(message: string): never {
  throw new GraceClientError('BAD_OPTIONS', message)
}

/** "host:port", "http://host:port" or "https://..." → a base URL without a trailing slash. */
export function serverUrl(s: string): string {
  const text = s.trim()
  const withScheme = /^https?:\/\//i.test(text) ? text : `http://${text}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    bad(`server ${JSON.stringify(s)} is not host:port or a URL`)
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username) bad(`server ${JSON.stringify(s)} must be only a scheme, host and port`)
  return `${url.protocol}//${url.host}`
}

function timeout(v: unknown, key: string, dflt: number, min = 1): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > MAX_TIMEOUT_MS) bad(`${key} must be an integer in ${min}..${MAX_TIMEOUT_MS} (ms)`)
  return v
}

function str(v: unknown, key: string, dflt: string): string {
  if (v === undefined) return dflt
  if (typeof v !== 'string' || v.trim() === '' || v !== v.trim() || v.length > 512) bad(`${key} must be a non-empty string without edge spaces, at most 512 characters`)
  return v
}

export function resolveOptions(opts: ClientOptions = {}): ResolvedOptions {
  if (opts === null || typeof opts !== 'object') bad('options must be an object')
  for (const k of Object.keys(opts)) if (!KEYS.has(k)) bad(`unknown option ${JSON.stringify(k)}`)
  const rawServers = opts.servers === undefined ? ['127.0.0.1:8848'] : typeof opts.servers === 'string' ? opts.servers.split(',') : opts.servers
  if (!Array.isArray(rawServers) || rawServers.some((s) => typeof s !== 'string')) bad('servers must be a string or an array of strings')
  const servers = [...new Set(rawServers.filter((s) => s.trim() !== '').map(serverUrl))]
  if (servers.length === 0) bad('servers names no server')
  if (servers.length > MAX_SERVERS) bad(`at most ${MAX_SERVERS} servers`)
  const weight = opts.weight ?? 1
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > 10_000) bad('weight must be a number in 0..10000')
  const metadata = opts.metadata ?? {}
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata) || Object.values(metadata).some((v) => typeof v !== 'string')) {
    bad('metadata must be an object of strings')
  }
  for (const [k, v] of [['ephemeral', opts.ephemeral], ['deregisterOnExit', opts.deregisterOnExit]] as const) {
    if (v !== undefined && typeof v !== 'boolean') bad(`${k} must be true or false`)
  }
  const balancer = opts.balancer ?? 'weightedRandom'
  if (!(BALANCER_NAMES as readonly string[]).includes(balancer)) bad(`balancer must be one of ${BALANCER_NAMES.join(', ')}`)
  let cacheDir: string | false = join(homedir(), '.grace', 'cache')
  if (opts.cacheDir === false) cacheDir = false
  else if (opts.cacheDir !== undefined) cacheDir = str(opts.cacheDir, 'cacheDir', '')
  const maxAttempts = opts.maxAttempts ?? Math.min(8, Math.max(servers.length, 2))
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > MAX_SERVERS) bad(`maxAttempts must be an integer in 1..${MAX_SERVERS}`)
  const logger = opts.logger
  if (logger !== undefined && (typeof logger !== 'object' || typeof logger.warn !== 'function')) bad('logger must have info, warn and error methods')
  return {
    servers,
    namespace: str(opts.namespace, 'namespace', 'public'),
    group: str(opts.group, 'group', 'DEFAULT_GROUP'),
    cluster: str(opts.cluster, 'cluster', 'DEFAULT'),
    weight,
    metadata: { ...metadata },
    ephemeral: opts.ephemeral ?? true,
    clientId: str(opts.clientId, 'clientId', `${hostname().slice(0, 200)}-${process.pid}-${randomBytes(4).toString('hex')}`),
    requestTimeoutMs: timeout(opts.requestTimeoutMs, 'requestTimeoutMs', 3000),
    // The server holds a long poll up to 120 s.
    longPollTimeoutMs: Math.min(120_000, timeout(opts.longPollTimeoutMs, 'longPollTimeoutMs', 30_000)),
    refreshIntervalMs: timeout(opts.refreshIntervalMs, 'refreshIntervalMs', 30_000, 100),
    memberRefreshMs: timeout(opts.memberRefreshMs, 'memberRefreshMs', 30_000, 0),
    maxAttempts,
    cacheDir,
    deregisterOnExit: opts.deregisterOnExit ?? true,
    balancer: balancer as BalancerName,
    logger,
  }
}

/** Config files are small; a bigger one is a mistake. */
const MAX_CONFIG_FILE_BYTES = 1024 * 1024

/**
 * Reads client options from a file: JSON (grace.json), or YAML (.yaml, .yml). Without a path:
 * $GRACE_CLIENT_CONFIG, else the first of grace.json, grace.yaml, grace.yml in the working
 * directory, else {} (no file is not an error then).
 */
export async function loadClientOptions(path?: string): Promise<ClientOptions> {
  const explicit = path ?? process.env.GRACE_CLIENT_CONFIG
  const candidates = explicit ? [explicit] : ['grace.json', 'grace.yaml', 'grace.yml']
  for (const file of candidates) {
    let text: string
    try {
      const buf = await readFile(file)
      if (buf.length > MAX_CONFIG_FILE_BYTES) bad(`${file} is over ${MAX_CONFIG_FILE_BYTES} bytes`)
      text = buf.toString('utf8')
    } catch (err) {
      if (err instanceof GraceClientError) throw err
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !explicit) continue
      bad(`cannot read client config ${file}: ${(err as Error).message}`)
    }
    const ext = extname(file).toLowerCase()
    let parsed: unknown
    try {
      if (ext === '.yaml' || ext === '.yml') {
        // Loaded only when a YAML file is used.
        const yaml = await import('yaml')
        parsed = yaml.parse(text, { maxAliasCount: 100 })
      } else {
        parsed = JSON.parse(text)
      }
    } catch (err) {
      bad(`${file} is not valid ${ext === '.json' || ext === '' ? 'JSON' : 'YAML'}: ${(err as Error).message}`)
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) bad(`${file} must hold an object of options`)
    // A file may nest the options under "grace", so that it can share a file with other settings.
    const obj = parsed as Record<string, unknown>
    const options = (obj.grace && typeof obj.grace === 'object' ? obj.grace : obj) as ClientOptions
    if ('logger' in options) bad(`${file}: logger can only be given in code`)
    resolveOptions(options)
    return options
  }
  return {}
}
