// Small command-line helpers the benchmarks share.

import { describeMachine, load1 } from './machine.js'

/** What every benchmark report says about how and where it ran. */
export function runInfoBase(script: string, run: { durationS: number; warmupS: number; pairs: number; pinning: string; quietWaitedS: number; quietWaitS: number; loadBefore: number }) {
  return {
    date: new Date().toISOString(),
    command: [script, ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
    durationS: run.durationS,
    warmupS: run.warmupS,
    pairs: run.pairs,
    pinning: run.pinning,
    quietWaitedS: run.quietWaitedS,
    quietWaitS: run.quietWaitS,
    machine: describeMachine(),
    loadBefore: run.loadBefore,
    loadAfter: load1(),
  }
}

export function positive(name: string, value: string): number {
  const n = Number(value)
  if (!(n > 0)) fatal(`${name} must be a positive number of seconds, got ${value}`)
  return n
}

/** Progress goes to stderr so stdout holds only the tables. */
export function progress(line: string): void {
  process.stderr.write(line + '\n')
}

export function fatal(message: string): never {
  process.stderr.write(message + '\n')
  process.exit(2)
}
