// The health settings an operator can change (flags, environment variables, the config file;
// src/settings.ts reads them and passes them here to be checked).

import { LIMITS } from '../core/limits.js'
import { DEFAULT_PROBE_CONCURRENCY } from './health-prober.js'
import { SELF_PRESERVATION_DEFAULTS, type SelfPreservationSettings } from './self-preservation.js'

export interface HealthSettings {
  /** Probes in flight at once on the probing node. */
  readonly probeConcurrency: number
  readonly selfPreservation: SelfPreservationSettings
}

export const HEALTH_DEFAULTS: HealthSettings = { probeConcurrency: DEFAULT_PROBE_CONCURRENCY, selfPreservation: SELF_PRESERVATION_DEFAULTS }

export const HEALTH_USAGE = `  --probe-concurrency N   health probes in flight at once, 1..${LIMITS.maxProbeConcurrency} (GRACE_PROBE_CONCURRENCY, default ${DEFAULT_PROBE_CONCURRENCY})
  --self-preservation-share S  share of a node's ephemeral clients that may expire within one
                     window before expiry pauses, in (0, 1]; 1 turns self-preservation off
                     (GRACE_SELF_PRESERVATION_SHARE, default ${SELF_PRESERVATION_DEFAULTS.share})
  --self-preservation-window-ms MS  that window (GRACE_SELF_PRESERVATION_WINDOW_MS, default ${SELF_PRESERVATION_DEFAULTS.windowMs})
  --self-preservation-min-clients N  no pause below this many clients (GRACE_SELF_PRESERVATION_MIN_CLIENTS, default ${SELF_PRESERVATION_DEFAULTS.minClients})`

function int(value: string | undefined, flag: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^\d{1,10}$/.test(value.trim()) || n < min || n > max) throw new Error(`--${flag} must be a whole number in ${min}..${max}`)
  return n
}

/** The health flags (and config file keys), as src/settings.ts hands them over. */
export type HealthFlag = 'probe-concurrency' | 'self-preservation-share' | 'self-preservation-window-ms' | 'self-preservation-min-clients'

/**
 * Checks the values src/settings.ts found (from a flag, the environment or the config file, in
 * that order); absent ones take their defaults. A bad value throws an error naming the flag.
 */
export function readHealthSettings(values: Partial<Record<HealthFlag, string | undefined>>): HealthSettings {
  const shareText = values['self-preservation-share']
  let share: number = SELF_PRESERVATION_DEFAULTS.share
  if (shareText !== undefined) {
    share = Number(shareText)
    if (!/^(0|1)?(\.\d+)?$/.test(shareText.trim()) || !(share > 0 && share <= 1)) throw new Error('--self-preservation-share must be a number in (0, 1], such as 0.5; 1 turns it off')
  }
  return {
    probeConcurrency: int(values['probe-concurrency'], 'probe-concurrency', 1, LIMITS.maxProbeConcurrency, DEFAULT_PROBE_CONCURRENCY),
    selfPreservation: {
      share,
      windowMs: int(values['self-preservation-window-ms'], 'self-preservation-window-ms', 1_000, 3_600_000, SELF_PRESERVATION_DEFAULTS.windowMs),
      minClients: int(values['self-preservation-min-clients'], 'self-preservation-min-clients', 1, 1_000_000, SELF_PRESERVATION_DEFAULTS.minClients),
    },
  }
}
