// The machine a run happened on: numbers mean little without it.

import { readFileSync } from 'node:fs'
import { cpus, loadavg, totalmem, type as osType, release } from 'node:os'

export interface Machine {
  cpuModel: string
  cores: number
  memoryGiB: number
  os: string
  node: string
}

export function describeMachine(): Machine {
  return {
    cpuModel: cpuModel(),
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${osType()} ${release()}`,
    node: process.version,
  }
}

/** 1-minute load average, to tell a quiet machine from a busy one. */
export function load1(): number {
  return Math.round(loadavg()[0] * 100) / 100
}

/**
 * CPU seconds all cores spent busy since boot (/proc/stat, USER_HZ ticks), or undefined off Linux.
 * Busy minus the two benchmarked processes is what the rest of a shared machine took meanwhile.
 * Busy includes steal: time the hypervisor gave this VM's CPUs to someone else.
 */
export function machineBusySeconds(): number | undefined {
  const ticks = cpuTicks()
  if (ticks === undefined) return undefined
  const idle = ticks[3]! + ticks[4]!
  return (ticks.reduce((a, b) => a + b, 0) - idle) / 100
}

/**
 * CPU seconds stolen from this VM since boot (steal, /proc/stat), or undefined off Linux: noise
 * from outside the machine, which no wait for quiet processes inside it can avoid.
 */
export function machineStealSeconds(): number | undefined {
  const ticks = cpuTicks()
  return ticks === undefined ? undefined : ticks[7]! / 100
}

/** /proc/stat's first line: user nice system idle iowait irq softirq steal. */
function cpuTicks(): number[] | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
    return line.trim().split(/\s+/).slice(1, 9).map(Number)
  } catch {
    return undefined
  }
}

function cpuModel(): string {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (match) return match[1].trim()
  } catch {
    // Not Linux: fall through to what node reports.
  }
  return cpus()[0]?.model ?? 'unknown'
}
