// The fault schedule of a chaos run, drawn from its seed before the run starts: which fault, for
// how long, and the quiet gap before it. Whom a fault hits is drawn from the seed too, as a
// number the runner turns into a node when the fault starts ("the leader" is only known then).
// One fault at a time, each healed before the next, so that every anomaly can be traced to the
// fault around it.

import { Random } from '../sim/random.js'

export const FAULT_KINDS = [
  'kill', // SIGKILL a node, restart it on its data later
  'pause', // SIGSTOP a node, SIGCONT later
  'partition-leader', // cut the leader off from both peers, both ways
  'partition-minority', // cut a random node off from both peers, both ways
  'partition-asymmetric', // one node cannot send to one peer; everything else flows
  'degrade', // packet loss and delay (or a slow link) on one node
  'membership', // remove a node from the cluster, wipe it, add it back as a new member
] as const

export type FaultKind = (typeof FAULT_KINDS)[number]

/** Faults that need network namespaces. */
export const NETWORK_FAULTS: ReadonlySet<FaultKind> = new Set(['partition-leader', 'partition-minority', 'partition-asymmetric', 'degrade'])

export interface PlannedFault {
  readonly kind: FaultKind
  /** Quiet time before the fault starts. */
  readonly gapMs: number
  /** How long the fault holds before it is healed (membership: how long the node stays out). */
  readonly holdMs: number
  /** Picks the target(s) among the candidates when the fault starts. */
  readonly pick: number
  readonly lossPercent: number
  readonly delayMs: number
}

const HOLD_MS: Record<FaultKind, readonly [number, number]> = {
  kill: [2_000, 10_000],
  pause: [2_000, 10_000],
  'partition-leader': [4_000, 16_000],
  'partition-minority': [4_000, 16_000],
  'partition-asymmetric': [4_000, 16_000],
  degrade: [4_000, 12_000],
  membership: [1_000, 4_000],
}
const GAP_MS: readonly [number, number] = [2_000, 7_000]

/** Faults for `durationMs` of faulting, in order; the runner stops when its time is up. */
export function planFaults(seed: number, kinds: readonly FaultKind[], durationMs: number): PlannedFault[] {
  if (kinds.length === 0) return []
  const rng = new Random(seed).fork()
  const out: PlannedFault[] = []
  let t = 0
  while (t < durationMs) {
    const kind = rng.pick(kinds)
    const [lo, hi] = HOLD_MS[kind]
    const f: PlannedFault = {
      kind,
      gapMs: rng.int(GAP_MS[0], GAP_MS[1]),
      holdMs: rng.int(lo, hi),
      pick: rng.u32(),
      lossPercent: rng.int(5, 30),
      delayMs: rng.int(20, 200),
    }
    out.push(f)
    t += f.gapMs + f.holdMs
  }
  return out
}

/** Parses `--faults`: `all`, or a comma-separated list of kinds. */
export function parseFaults(spec: string): FaultKind[] {
  if (spec === 'all') return [...FAULT_KINDS]
  const kinds = spec.split(',').map((s) => s.trim()).filter(Boolean)
  for (const k of kinds) if (!(FAULT_KINDS as readonly string[]).includes(k)) throw new Error(`unknown fault "${k}": one of ${FAULT_KINDS.join(', ')}, or all`)
  return kinds as FaultKind[]
}
