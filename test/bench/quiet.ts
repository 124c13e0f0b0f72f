// Waiting for a shared machine to quiet down before a measurement (used by http-bench.ts and
// cp-bench.ts).

import { setTimeout as sleep } from 'node:timers/promises'
import { machineBusySeconds } from './machine.js'
import { NOISY_OTHER_CPU_PCT } from './report.js'
import type { RunningServer } from './servers.js'

/**
 * A shared machine: before a pair, while other processes use more than NOISY_OTHER_CPU_PCT of a
 * core (sampled over 1 s, with the servers idle), wait, up to maxWaitS seconds; then measure
 * anyway, and the pair shows as noisy if the noise lasts into it. Noise that comes and goes within
 * a pair is left to the median over pairs. Resolves with the seconds waited.
 */
export async function waitQuiet(idleServers: readonly Pick<RunningServer, 'cpuSeconds'>[], maxWaitS: number, progress: (line: string) => void): Promise<number> {
  const started = performance.now()
  let said = -Infinity
  for (;;) {
    const other = await otherCpuPct(idleServers)
    const waitedS = (performance.now() - started) / 1000
    if (!(other > NOISY_OTHER_CPU_PCT)) break
    if (waitedS >= maxWaitS) {
      progress(`  other processes still use ${Math.round(other)}% of a core after ${Math.round(waitedS)} s; measuring anyway`)
      break
    }
    if (waitedS - said >= 10) {
      progress(`  other processes use ${Math.round(other)}% of a core; waiting for them (at most ${maxWaitS} s)`)
      said = waitedS
    }
  }
  return (performance.now() - started) / 1000
}

/** Percent of one core the rest of the machine used over one second, or NaN off Linux. */
async function otherCpuPct(idleServers: readonly Pick<RunningServer, 'cpuSeconds'>[]): Promise<number> {
  const ours = () => {
    const own = process.cpuUsage()
    return idleServers.reduce((sum, s) => sum + (s.cpuSeconds() ?? 0), (own.user + own.system) / 1e6)
  }
  const wallStart = performance.now()
  const machineStart = machineBusySeconds()
  const oursStart = ours()
  await sleep(1000)
  const machineEnd = machineBusySeconds()
  const wallS = (performance.now() - wallStart) / 1000
  if (machineStart === undefined || machineEnd === undefined) return Number.NaN
  return (100 * (machineEnd - machineStart - (ours() - oursStart))) / wallS
}
