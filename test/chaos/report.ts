// What a chaos run writes: report.json (everything below) and report.md (the same, for people).

import type { CpVerdict } from './checks.js'
import type { FaultKind } from './schedule.js'

export interface ChaosReport {
  seed: number
  startedAt: string
  faultSeconds: number
  wallSeconds: number
  network: { kind: 'netns' | 'loopback'; notes: string[] }
  faultKinds: FaultKind[]
  skippedFaultKinds: FaultKind[]
  faults: { kind: FaultKind; targets: string[]; startMs: number; endMs: number; detail: string; problem?: string }[]
  cp: { clients: number; operations: number; ok: number; fail: number; unknown: number; keys: string[]; linearizable: CpVerdict }
  ap: {
    clients: number
    calls: number
    failedCalls: number
    acknowledged: number
    lostAnswers: number
    viewSamples: number
    recoveryAllowanceMs: number
    settledAfterHealMs: number | null
    convergenceMs: number | null
    convergenceBoundMs: number
  }
  /** Safety violations: a non-linearizable history, a live instance removed, no convergence. */
  anomalies: string[]
  /** The harness could not do what it meant to (a node that did not restart, a refused change). */
  problems: string[]
  verdict: 'pass' | 'fail'
  replay: string
}

export function markdownReport(r: ChaosReport, progress: readonly string[]): string {
  const count = new Map<string, number>()
  for (const f of r.faults) count.set(f.kind, (count.get(f.kind) ?? 0) + 1)
  const lin = r.cp.linearizable
  return `# Chaos run, seed ${r.seed}: ${r.verdict.toUpperCase()}

Started ${r.startedAt}; ${r.faultSeconds} s of faults, ${r.wallSeconds} s in all. Replay: \`${r.replay}\`

Network: ${r.network.notes.join('; ')}.${r.skippedFaultKinds.length ? ` Skipped: ${r.skippedFaultKinds.join(', ')}.` : ''}

## Faults (${r.faults.length})

| kind | injected |
|---|--:|
${[...count].map(([k, n]) => `| ${k} | ${n} |`).join('\n')}

| start s | end s | kind | what |
|--:|--:|---|---|
${r.faults.map((f) => `| ${(f.startMs / 1000).toFixed(1)} | ${(f.endMs / 1000).toFixed(1)} | ${f.kind} | ${f.detail}${f.problem ? ` — **problem: ${f.problem}**` : ''} |`).join('\n')}

## CP workload

${r.cp.clients} clients, ${r.cp.operations} operations on ${r.cp.keys.length} keys (${r.cp.keys.join(', ')}): ${r.cp.ok} ok, ${r.cp.fail} failed (never took effect), ${r.cp.unknown} unknown (may have taken effect).
Linearizability: ${lin.ok ? 'linearizable' : lin.inconclusive ? 'inconclusive (step budget)' : `**not linearizable** (key ${lin.key})`}, ${lin.steps} search steps.${lin.explanation ? `\n\n\`\`\`\n${lin.explanation}\n\`\`\`` : ''}

## AP workload

${r.ap.clients} clients heartbeating every second: ${r.ap.calls} calls, ${r.ap.acknowledged} acknowledged, ${r.ap.failedCalls} failed over to another node, ${r.ap.lostAnswers} answered "not registered"; ${r.ap.viewSamples} view samples checked.
After the faults the cluster settled in ${r.ap.settledAfterHealMs ?? '—'} ms, and the views converged ${r.ap.convergenceMs === null ? '**never**' : `${r.ap.convergenceMs} ms later`} (bound ${r.ap.convergenceBoundMs} ms).

## Anomalies (${r.anomalies.length})

${r.anomalies.length ? r.anomalies.map((a) => `- ${a}`).join('\n') : 'None.'}

## Problems (${r.problems.length})

${r.problems.length ? r.problems.map((p) => `- ${p}`).join('\n') : 'None.'}

## Log

\`\`\`
${progress.join('\n')}
\`\`\`
`
}
