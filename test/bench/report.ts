// Turning measurements into the Markdown table, the target verdicts, the section of
// docs/benchmarks.md and the raw JSON. No IO except the two writes at the bottom.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Machine } from './machine.js'
import { type Measurement, PREWARM_CONNECTIONS } from './measure.js'

/** One roof run and the Grace run right after it, under (nearly) the same machine conditions. */
export interface Pair {
  roof: Measurement
  grace: Measurement
  /** Why this pair's Grace numbers cannot be trusted beyond non-2xx and errors (e.g. an empty answer). */
  problems: string[]
}

/** One cell: a scenario at one connection count, measured as several alternating pairs. */
export interface Row {
  scenario: string
  title: string
  connections: number
  pairs: Pair[]
  /** About the cell as a whole, e.g. what a failing request was answered. */
  problems: string[]
}

export interface RunInfo {
  date: string
  command: string
  durationS: number
  warmupS: number
  /** Seconds of each scenario on each server, once, before the first cell (0: none). */
  prewarmS: number
  pairs: number
  /** What ran on which CPU, or why nothing was pinned. */
  pinning: string
  /** Seconds spent in all waiting for other processes to quiet down before pairs, and the limit per pair. */
  quietWaitedS: number
  quietWaitS: number
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

type Side = 'roof' | 'grace'

/** Median of the finite values (mean of the middle two for an even count); NaN if there are none. */
export function median(values: number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (v.length === 0) return Number.NaN
  const mid = v.length >> 1
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

export function pairRatio(pair: Pair): number {
  return pair.roof.reqPerSec > 0 ? pair.grace.reqPerSec / pair.roof.reqPerSec : Number.NaN
}

/**
 * The cell's Grace/roof: the median of the per-pair ratios. Each ratio compares two runs made
 * seconds apart, so a slow spell of the machine lowers both sides of one pair rather than one
 * side of the comparison, and the median drops a pair that caught a spell in the middle.
 */
export function ratio(row: Row): number {
  return median(row.pairs.map(pairRatio))
}

export function ratioRange(row: Row): { min: number; max: number } {
  const v = row.pairs.map(pairRatio).filter(Number.isFinite)
  return v.length ? { min: Math.min(...v), max: Math.max(...v) } : { min: Number.NaN, max: Number.NaN }
}

/** Median over the cell's pairs of one number of one side. */
export function med(row: Row, side: Side, key: keyof Measurement): number {
  return median(row.pairs.map((p) => p[side][key] as number))
}

/** Every reason a row must be read as FAILED (any failing pair fails the cell); empty when it is fine. */
export function failures(row: Row): string[] {
  const out: string[] = []
  row.pairs.forEach((pair, i) => {
    const where = row.pairs.length > 1 ? `pair ${i + 1} ` : ''
    for (const [side, m] of [['roof', pair.roof], ['Grace', pair.grace]] as const) {
      if (m.responses === 0) out.push(`${where}${side}: no responses`)
      if (m.non2xx > 0 || m.errors > 0) {
        const codes = Object.entries(m.statusCodes)
          .filter(([code]) => !code.startsWith('2'))
          .map(([code, count]) => `${code}×${count}`)
          .join(', ')
        out.push(`${where}${side}: ${m.non2xx} non-2xx${codes ? ` (${codes})` : ''}, ${m.errors} errors (${m.timeouts} timeouts)`)
      }
    }
    for (const problem of pair.problems) out.push(`${where}${problem}`)
  })
  return out.concat(row.problems)
}

export function resultsTable(rows: Row[]): string {
  const lines = [
    '| Scenario | Conns | Grace/roof | Range | Roof req/s | Grace req/s | Roof p50 / p99 ms | Grace p50 / p99 ms | Server CPU µs/req roof / Grace | Server CPU % roof / Grace | autocannon CPU % roof / Grace | Other CPU % max | Resp. bytes roof / Grace | Grace non-2xx / errors | Status |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ]
  for (const row of rows) {
    const failed = failures(row)
    const range = ratioRange(row)
    const noisy = noisyPairs(row)
    const otherMax = Math.max(...row.pairs.flatMap((p) => [p.roof.otherCpuPct, p.grace.otherCpuPct]))
    const sum = (key: 'non2xx' | 'errors') => row.pairs.reduce((n, p) => n + p.grace[key], 0)
    const status = failed.length ? `**FAILED**: ${cell(failed.join('; '))}` : noisy > 0 ? `ok, ${noisy} of ${row.pairs.length} pairs noisy` : 'ok'
    lines.push(
      `| ${row.title} | ${row.connections} | ${fixed(ratio(row), 2)} | ${fixed(range.min, 2)}–${fixed(range.max, 2)} ` +
        `| ${int(med(row, 'roof', 'reqPerSec'))} | ${int(med(row, 'grace', 'reqPerSec'))} | ${ms(row, 'roof')} | ${ms(row, 'grace')} ` +
        `| ${int(med(row, 'roof', 'serverCpuUsPerReq'))} / ${int(med(row, 'grace', 'serverCpuUsPerReq'))} ` +
        `| ${int(med(row, 'roof', 'serverCpuPct'))} / ${int(med(row, 'grace', 'serverCpuPct'))} ` +
        `| ${int(med(row, 'roof', 'clientCpuPct'))} / ${int(med(row, 'grace', 'clientCpuPct'))} | ${int(otherMax)} ` +
        `| ${int(med(row, 'roof', 'bytesPerResponse'))} / ${int(med(row, 'grace', 'bytesPerResponse'))} ` +
        `| ${sum('non2xx')} / ${sum('errors')} | ${status} |`,
    )
  }
  return lines.join('\n')
}

/**
 * Other processes took more than this share of a core during a pair's roof or Grace run: the two
 * did not see the same machine, and that pair's ratio is less reliable than usual.
 */
export const NOISY_OTHER_CPU_PCT = 15

/**
 * Pairs in which other processes were busy. Information only: a noisy pair is not measured again,
 * because the median over the pairs already sets disturbed pairs aside (two of five), and noise that lasts
 * (someone's test suite) would disturb an immediate retry as well. What helps against lasting
 * noise is waiting for it to end before a pair starts (http-bench.ts, --quiet-wait).
 */
export function noisyPairs(row: Row): number {
  return row.pairs.filter((p) => p.roof.otherCpuPct > NOISY_OTHER_CPU_PCT || p.grace.otherCpuPct > NOISY_OTHER_CPU_PCT).length
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
    const range = ratioRange(row)
    const spread = row.pairs.length > 1 ? ` (${fixed(range.min, 2)}–${fixed(range.max, 2)})` : ''
    out.push({ target, measured: fixed(ratio(row), 2) + spread + (failed ? ' (run FAILED)' : ''), met: !failed && ratio(row) >= min })
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
    // The median of Grace's per-pair p50s, as the ratios are medians of the per-pair ratios.
    const p50 = med(per1, 'grace', 'p50Ms')
    out.push({ target, measured: `${fixed(p50, 3)} ms${failed ? ' (run FAILED)' : ''}`, met: !failed && p50 <= 1 })
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
    `Last run ${info.date} with \`${info.command}\`: ${info.pairs} pair${info.pairs === 1 ? '' : 's'} per cell, ` +
      `each run after a ${info.warmupS} s warmup and measured for ${info.durationS} s, pipelining 1; ` +
      (info.prewarmS > 0 ? `both servers prewarmed once with every scenario for ${info.prewarmS} s each at ${PREWARM_CONNECTIONS} connections.` : 'no prewarm.'),
    `Pinning: ${info.pinning}. Waited ${Math.round(info.quietWaitedS)} s in all for other processes to quiet down ` +
      `before pairs (at most ${info.quietWaitS} s each).`,
    `Machine: ${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; ` +
      `1-minute load ${info.loadBefore} before, ${info.loadAfter} after. ` +
      `Grace wrote ${(info.graceLogBytes / 2 ** 20).toFixed(1)} MiB of request log and exited with ${info.graceExit}.`,
    '',
    resultsTable(rows),
    '',
    `Each cell is ${info.pairs} alternating pair${info.pairs === 1 ? '' : 's'} of runs, roof then Grace; Grace/roof is the median of the`,
    'per-pair ratios, Range their lowest and highest, and every other number the median over the pairs.',
    'Server CPU µs/req is the server process\'s CPU time (all threads) per response. CPU % is percent of',
    'one core over the measured run (the server, and autocannon, which runs in the benchmark process).',
    'Near 100 % for autocannon means the client set the pace: the roof could have gone faster, so',
    'there the ratio flatters Grace. "Other" is the most the rest of the machine used during any run',
    `of the cell; a pair with a run above ${NOISY_OTHER_CPU_PCT} % counts as noisy. Response bytes include the headers.`,
    '',
    '### Targets',
    '',
    verdictTable(verdicts(rows)),
    ...(info.graceStderr ? ['', 'Grace wrote to stderr during the run:', '', '```', info.graceStderr.trimEnd(), '```'] : []),
  ].join('\n')
}


/** The start of a new docs/benchmarks.md; an existing file keeps its own intro. */
const INTRO = `# Benchmarks

Numbers from benchmarks that ship with Grace, each in a section that its benchmark rewrites; the
rest of this file is left as it is.

## How the HTTP benchmark works

\`npm run bench\` builds Grace, starts the real server (\`bin/grace.js\`, single node, a fresh data
directory, log level \`info\`, its one JSON line per request written to a file, so logging is paid
for) and, in another process, a fastify server with the same routes that only parses the JSON
body and answers a constant: the roof, the most that fastify on this machine can do. autocannon,
in the benchmark's own process, drives one server at a time over loopback, at 1 and at 64
connections. Writes are distinct (new instances, new config content) rather than the same request
repeated. Latencies are per response, all status codes, at sub-millisecond resolution. Raw
results, every pair included, go to \`bench-results/\` (not committed).

The machine is small, shared and noisy (the same server can give 10k req/s in one 5 s run and
18k in the next), so one roof run against one Grace run says little. Instead:

- **Pinning.** Where \`taskset\` (util-linux) exists and at least two CPUs are available, the
  benchmark process, and so autocannon, is pinned to one CPU (CPU 0) and every server under test
  to another (CPU 1), so that neither side competes with the other for a core and a server's
  threads do not wander. Otherwise the run is unpinned; the generated section says which.
- **Alternating pairs.** Each cell (scenario × connections) is measured as N pairs, roof then
  Grace, roof then Grace, … (\`--pairs N\`, default 5), each run after its own warmup (\`--warmup S\`,
  default 2 s) and measured for \`--duration S\` seconds (default 5). A pair's Grace/roof compares
  two runs seconds apart; the cell's ratio, the one the targets use, is the **median of the
  per-pair ratios**, and the range shows their spread. The other columns (req/s, p50, p99, CPU)
  are medians over the pairs too, and the p50 target uses the median of Grace's per-pair p50s.
  \`-- --quick\` is 2 pairs of 3 s runs, about 4 minutes; the default takes about 13 on a quiet
  machine.
- **Prewarm.** Once, after both servers have started: every scenario for \`--prewarm S\` seconds
  (default 2) on each server at ${PREWARM_CONNECTIONS} connections, not measured. The first cell, at one connection,
  came seconds after Grace started: V8 completed 344 optimizations in Grace's first 5 s of
  registrations at one connection, 122 in the next 5 and 24 in the 5 after (\`--trace-opt\`), on
  compiler threads that share the server's core.
- **CPU per request.** Server CPU µs per response (all threads of the server process, from
  /proc) depends much less on how much of its core a server got than req/s does, so it is the
  steadier measure of Grace's work per request against the roof's.
- **Other processes.** Before each pair the benchmark samples what the rest of the machine uses
  for a second and, while that is more than ${NOISY_OTHER_CPU_PCT} % of a core, waits (at most \`--quiet-wait S\`,
  default 60 s, then measures anyway). What other processes used during each run is recorded; a
  pair where they used more than ${NOISY_OTHER_CPU_PCT} % of a core counts as noisy, and the status says how many
  pairs were. A noisy pair is not measured again: the median of five sets two aside.
- **Checks.** A cell in which any pair has a non-2xx answer, a connection error, or a Grace answer
  of the wrong shape is marked FAILED, and the command exits with 1.
`

/**
 * Replaces (or appends) the generated section between `<!-- bench:NAME:start -->` and
 * `<!-- bench:NAME:end -->` (NAME: http for this benchmark, cp for cp-bench.ts), creating the
 * file with an intro if needed.
 */
export function writeDocsSection(path: string, section: string, name = 'http'): void {
  const START = `<!-- bench:${name}:start -->`
  const END = `<!-- bench:${name}:end -->`
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
  const data = {
    ...info,
    rows: rows.map((r) => ({ ...r, ratio: ratio(r), ratioRange: ratioRange(r), pairRatios: r.pairs.map(pairRatio), failures: failures(r) })),
    targets: verdicts(rows),
  }
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n')
  return path
}

/** Server answers quoted in a cell must not end the cell or the row. */
export function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s+/g, ' ')
}

export function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'
}

export function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–'
}

function ms(row: Row, side: Side): string {
  return `${fixed(med(row, side, 'p50Ms'), 2)} / ${fixed(med(row, side, 'p99Ms'), 2)}`
}
