// Turning measurements into the Markdown table, the target verdicts, the section of
// docs/benchmarks.md and the raw JSON. No IO except the two writes at the bottom.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Machine } from './machine.js'
import type { Measurement } from './measure.js'

export interface Row {
  scenario: string
  title: string
  connections: number
  roof: Measurement
  grace: Measurement
  /** Why the Grace numbers cannot be trusted beyond non-2xx and errors (e.g. an empty answer). */
  problems: string[]
}

export interface RunInfo {
  date: string
  command: string
  durationS: number
  warmupS: number
  machine: Machine
  loadBefore: number
  loadAfter: number
  /** Bytes Grace wrote to its request log over the run; proves logging was on. */
  graceLogBytes: number
  graceExit: string
  /** The start of whatever Grace wrote to stderr; empty when all was well. */
  graceStderr: string
}

export interface TargetVerdict {
  target: string
  measured: string
  met: boolean | undefined
}

export function ratio(row: Row): number {
  return row.roof.reqPerSec > 0 ? row.grace.reqPerSec / row.roof.reqPerSec : Number.NaN
}

/** Every reason a row must be read as FAILED; empty when it is fine. */
export function failures(row: Row): string[] {
  const out: string[] = []
  for (const [side, m] of [['roof', row.roof], ['Grace', row.grace]] as const) {
    if (m.responses === 0) out.push(`${side}: no responses`)
    if (m.non2xx > 0 || m.errors > 0) {
      const codes = Object.entries(m.statusCodes)
        .filter(([code]) => !code.startsWith('2'))
        .map(([code, count]) => `${code}×${count}`)
        .join(', ')
      out.push(`${side}: ${m.non2xx} non-2xx${codes ? ` (${codes})` : ''}, ${m.errors} errors (${m.timeouts} timeouts)`)
    }
  }
  return out.concat(row.problems)
}

export function resultsTable(rows: Row[]): string {
  const lines = [
    '| Scenario | Conns | Roof req/s | Grace req/s | Grace/roof | Roof p50 / p99 ms | Grace p50 / p99 ms | Server CPU % roof / Grace | autocannon CPU % roof / Grace | Other CPU % roof / Grace | Resp. bytes roof / Grace | Grace non-2xx / errors | Status |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ]
  for (const row of rows) {
    const failed = failures(row)
    lines.push(
      `| ${row.title} | ${row.connections} | ${int(row.roof.reqPerSec)} | ${int(row.grace.reqPerSec)} | ${fixed(ratio(row), 2)} ` +
        `| ${ms(row.roof)} | ${ms(row.grace)} | ${int(row.roof.serverCpuPct)} / ${int(row.grace.serverCpuPct)} ` +
        `| ${int(row.roof.clientCpuPct)} / ${int(row.grace.clientCpuPct)} | ${int(row.roof.otherCpuPct)} / ${int(row.grace.otherCpuPct)} ` +
        `| ${int(row.roof.bytesPerResponse)} / ${int(row.grace.bytesPerResponse)} ` +
        `| ${row.grace.non2xx} / ${row.grace.errors} | ${failed.length ? `**FAILED**: ${cell(failed.join('; '))}` : noisy(row) ? 'ok, noisy' : 'ok'} |`,
    )
  }
  return lines.join('\n')
}

/**
 * Other processes took more than this share of a core during the roof's or Grace's run: the two
 * did not see the same machine, and the ratio is less reliable than usual.
 */
const NOISY_OTHER_CPU_PCT = 15

export function noisy(row: Row): boolean {
  return row.roof.otherCpuPct > NOISY_OTHER_CPU_PCT || row.grace.otherCpuPct > NOISY_OTHER_CPU_PCT
}

/** The targets from the issue. A target measured on a FAILED row is not met. */
export function verdicts(rows: Row[]): TargetVerdict[] {
  const find = (scenario: string, connections: number) => rows.find((r) => r.scenario === scenario && r.connections === connections)
  const out: TargetVerdict[] = []
  const ratioTarget = (scenario: string, connections: number, min: number, label: string) => {
    const row = find(scenario, connections)
    const target = `${label}, ${connections} conn: Grace/roof ≥ ${min}`
    if (!row) {
      out.push({ target, measured: 'not measured', met: undefined })
      return
    }
    const failed = failures(row).length > 0
    out.push({ target, measured: fixed(ratio(row), 2) + (failed ? ' (run FAILED)' : ''), met: !failed && ratio(row) >= min })
  }
  ratioTarget('eph-register', 1, 0.8, 'ephemeral register')
  ratioTarget('eph-register', 64, 0.8, 'ephemeral register')
  ratioTarget('query', 1, 0.85, 'instance query')
  ratioTarget('query', 64, 0.85, 'instance query')
  ratioTarget('per-register', 64, 0.5, 'persistent register')
  const per1 = find('per-register', 1)
  const target = 'persistent register, 1 conn: p50 ≤ 1 ms'
  if (!per1) out.push({ target, measured: 'not measured', met: undefined })
  else {
    const failed = failures(per1).length > 0
    out.push({ target, measured: `${fixed(per1.grace.p50Ms, 3)} ms${failed ? ' (run FAILED)' : ''}`, met: !failed && per1.grace.p50Ms <= 1 })
  }
  return out
}

export function verdictTable(list: TargetVerdict[]): string {
  const lines = ['| Target | Measured | Met |', '|---|--:|:-:|']
  for (const v of list) lines.push(`| ${v.target} | ${v.measured} | ${v.met === undefined ? '–' : v.met ? 'yes' : '**no**'} |`)
  return lines.join('\n')
}

/** The generated part of docs/benchmarks.md: the run's context, then the two tables. */
export function docsSection(info: RunInfo, rows: Row[]): string {
  const m = info.machine
  return [
    '## HTTP API against a no-op fastify roof',
    '',
    `Last run ${info.date} with \`${info.command}\`: warmup ${info.warmupS} s, measured ${info.durationS} s per cell, pipelining 1.`,
    `Machine: ${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; ` +
      `1-minute load ${info.loadBefore} before, ${info.loadAfter} after. ` +
      `Grace wrote ${(info.graceLogBytes / 2 ** 20).toFixed(1)} MiB of request log and exited with ${info.graceExit}.`,
    '',
    resultsTable(rows),
    '',
    'CPU is percent of one core over the measured run (the server process with all its threads, and',
    'autocannon, which runs in the benchmark process). Near 100 % for autocannon means the client set',
    'the pace: the roof could have gone faster, so there the ratio flatters Grace. "Other" is what the',
    `rest of the machine used meanwhile; above ${NOISY_OTHER_CPU_PCT} % the cell is marked noisy. Response bytes include`,
    'the headers.',
    '',
    '### Targets',
    '',
    verdictTable(verdicts(rows)),
    ...(info.graceStderr ? ['', 'Grace wrote to stderr during the run:', '', '```', info.graceStderr.trimEnd(), '```'] : []),
  ].join('\n')
}

const START = '<!-- bench:http:start -->'
const END = '<!-- bench:http:end -->'

const INTRO = `# Benchmarks

Numbers from benchmarks that ship with Grace, each in a section that its benchmark rewrites; the
rest of this file is left as it is.

## How the HTTP benchmark works

\`npm run bench\` (\`-- --quick\` for 3 s runs, \`-- --duration S\` to choose) builds Grace, starts
the real server (\`bin/grace.js\`, single node, a fresh data directory, log level \`info\`, its one
JSON line per request written to a file, so logging is paid for) and, in another process, a
fastify server with the same routes that only parses the JSON body and answers a constant: the
roof, the most that fastify on this machine can do. autocannon, in the benchmark's own process,
drives one at a time over loopback, roof first, then Grace, each at 1 and at 64 connections,
after a 2 s warmup. Writes are distinct (new instances, new config content) rather than the same
request repeated. Latencies are per response, all status codes, at sub-millisecond resolution. A
cell with any non-2xx answer or connection error is marked FAILED. Raw results go to
\`bench-results/\` (not committed).

The machine is small and shared, so treat a single run as a rough measure: compare the ratio
Grace/roof, which cancels most of the machine, rather than the absolute numbers. The benchmark
records how much CPU the roof, Grace, autocannon and everything else used during each cell; a
cell in which other processes used more than ${NOISY_OTHER_CPU_PCT} % of a core is measured once more
(\`--retries N\`, default 1) and the quieter attempt kept, and one still noisy is marked so.
`

/** Replaces (or appends) the generated section, creating the file with an intro if needed. */
export function writeDocsSection(path: string, section: string): void {
  const block = `${START}\n${section}\n${END}`
  const old = existsSync(path) ? readFileSync(path, 'utf8') : INTRO
  const start = old.indexOf(START)
  const end = old.indexOf(END)
  const next =
    start >= 0 && end > start
      ? old.slice(0, start) + block + old.slice(end + END.length)
      : `${old.trimEnd()}\n\n${block}\n`
  writeFileSync(path, next)
}

export function writeJson(dir: string, info: RunInfo, rows: Row[]): string {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, `http-${info.date.replace(/[:.]/g, '-')}.json`)
  const data = { ...info, rows: rows.map((r) => ({ ...r, ratio: ratio(r), failures: failures(r) })), targets: verdicts(rows) }
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n')
  return path
}

/** Server answers quoted in a cell must not end the cell or the row. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s+/g, ' ')
}

function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'
}

function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–'
}

function ms(m: Measurement): string {
  return `${fixed(m.p50Ms, 2)} / ${fixed(m.p99Ms, 2)}`
}
