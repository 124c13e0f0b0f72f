// A linearizability checker for the simulator's key-value histories (Herlihy and Wing, 1990).
//
// The search is Wing and Gong's (1993): walk the history in time order and try to linearize some
// pending operation before the first return that has not been linearized yet; backtrack when
// none fits. Lowe's improvement ("Testing for linearizability", 2017), as in Porcupine: the
// history is a linked list of call and return entries, a linearized operation is lifted out of
// it, and every (set of linearized operations, model state) already explored is memoized, so a
// dead end is never explored twice. The model is one register per key (put, get, compare-and-set),
// and operations on different keys commute, so the history is checked key by key: the search is
// exponential in the worst case, and small partitions keep it cheap (Porcupine's P-compositionality).
//
// Outcomes, as a client sees them:
// - ok: the operation took effect once, between its invocation and its completion, and returned
//   `output`;
// - fail: it definitely never took effect, so it is left out;
// - unknown: the client gave up (timeout, the node crashed): it may have taken effect at any point
//   after its invocation, even after the client gave up, or never. It is given a return time of
//   +infinity and a model step that accepts any output; "never" is then the same as "last", after
//   everything the history observed, so the search is done once every known operation is placed.
//   A read with an unknown outcome constrains nothing and is dropped.

export type KvInput =
  /** value null: a delete. */
  | { readonly kind: 'put'; readonly key: string; readonly value: string | null }
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'cas'; readonly key: string; readonly expect: string | null; readonly value: string }

export type Outcome = 'ok' | 'fail' | 'unknown'

export interface HistoryOp {
  readonly id: number
  readonly client: number
  readonly input: KvInput
  /** Ordering stamps: any numbers that order every invocation and completion in real time. */
  readonly invoke: number
  /** Ignored (taken as +infinity) unless the outcome is ok. */
  readonly complete: number
  readonly outcome: Outcome
  /** get: the value read (null when absent); cas: whether it swapped; put: unused. */
  readonly output?: string | null | boolean
  /** Simulated milliseconds, for messages only. */
  readonly invokeTime?: number
  readonly completeTime?: number
}

export interface CheckResult {
  readonly ok: boolean
  /** The search ran out of its step budget: neither proved nor refuted. */
  readonly inconclusive?: boolean
  /** The key whose history is not linearizable (or ran out of budget). */
  readonly key?: string
  readonly explanation?: string
  readonly steps: number
}

type Value = string | null

export function formatOp(op: HistoryOp): string {
  const i = op.input
  const what = i.kind === 'put' ? `put(${i.key}, ${i.value})` : i.kind === 'get' ? `get(${i.key})` : `cas(${i.key}, ${i.expect}, ${i.value})`
  const out = op.outcome !== 'ok' ? op.outcome : i.kind === 'put' ? 'ok' : `-> ${JSON.stringify(op.output)}`
  const times =
    op.invokeTime !== undefined ? ` [${op.invokeTime}ms, ${op.outcome === 'ok' ? `${op.completeTime}ms` : '?'}]` : ` [${op.invoke}, ${op.outcome === 'ok' ? op.complete : 'inf'}]`
  return `#${op.id} c${op.client} ${what} ${out}${times}`
}

/** The register model: the state after op, or undefined when op cannot happen in `state`. */
function step(state: Value, op: HistoryOp): Value | undefined {
  const i = op.input
  const known = op.outcome === 'ok'
  switch (i.kind) {
    case 'put':
      return i.value
    case 'get':
      return op.output === state ? state : undefined
    case 'cas': {
      const swaps = state === i.expect
      if (!known) return swaps ? i.value : state
      return op.output === swaps ? (swaps ? i.value : state) : undefined
    }
  }
}

/** Checks a whole history, key by key; the first key that fails is reported. */
export function checkLinearizable(history: readonly HistoryOp[], opts: { maxSteps?: number } = {}): CheckResult {
  const byKey = new Map<string, HistoryOp[]>()
  for (const op of history) {
    if (op.outcome === 'fail') continue
    if (op.outcome === 'unknown' && op.input.kind === 'get') continue
    let ops = byKey.get(op.input.key)
    if (!ops) byKey.set(op.input.key, (ops = []))
    ops.push(op)
  }
  let steps = 0
  let inconclusive: CheckResult | null = null
  for (const key of [...byKey.keys()].sort()) {
    const r = checkRegister(key, byKey.get(key)!, opts.maxSteps ?? 2_000_000)
    steps += r.steps
    if (!r.ok && !r.inconclusive) return { ...r, steps }
    if (r.inconclusive && !inconclusive) inconclusive = r
  }
  return inconclusive ? { ...inconclusive, steps } : { ok: true, steps }
}

interface Node {
  readonly op: number
  readonly isCall: boolean
  /** For a call, its return. */
  match: Node | null
  prev: Node | null
  next: Node | null
  readonly time: number
}

function checkRegister(key: string, ops: readonly HistoryOp[], maxSteps: number): CheckResult {
  const n = ops.length
  const known = ops.map((op) => op.outcome === 'ok')
  const nodes: Node[] = []
  for (let i = 0; i < n; i++) {
    const op = ops[i]!
    const ret: Node = { op: i, isCall: false, match: null, prev: null, next: null, time: known[i] ? op.complete : Infinity }
    const call: Node = { op: i, isCall: true, match: ret, prev: null, next: null, time: op.invoke }
    if (known[i] && !(op.complete > op.invoke)) throw new Error(`op ${formatOp(op)} completes before it is invoked`)
    nodes.push(call, ret)
  }
  // Time order; on a tie a call goes first, which treats touching intervals as overlapping (the
  // permissive reading). Then by op, so the order is deterministic.
  nodes.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1) || a.op - b.op)
  const head: Node = { op: -1, isCall: false, match: null, prev: null, next: null, time: -Infinity }
  let prev = head
  for (const nd of nodes) {
    prev.next = nd
    nd.prev = prev
    prev = nd
  }

  const lift = (call: Node): void => {
    call.prev!.next = call.next
    if (call.next) call.next.prev = call.prev
    const ret = call.match!
    ret.prev!.next = ret.next
    if (ret.next) ret.next.prev = ret.prev
  }
  const unlift = (call: Node): void => {
    const ret = call.match!
    ret.prev!.next = ret
    if (ret.next) ret.next.prev = ret
    call.prev!.next = call
    if (call.next) call.next.prev = call
  }

  const words = new Uint32Array(Math.ceil(n / 32) + 1)
  const bitKey = (): string => {
    let s = ''
    for (let w = 0; w < words.length; w++) s += words[w]!.toString(36) + ','
    return s
  }
  const seen = new Set<string>()
  const calls: { node: Node; state: Value }[] = []
  let state: Value = null
  let remainingKnown = known.filter(Boolean).length
  let steps = 0
  // The deepest point the search reached, to explain a failure.
  let best: { linearized: number[]; state: Value; pending: number[] } | null = null

  let entry = head.next
  while (remainingKnown > 0) {
    if (++steps > maxSteps) {
      return { ok: false, inconclusive: true, key, steps, explanation: `gave up on key ${key} after ${maxSteps} steps (${n} operations)` }
    }
    if (entry === null) throw new Error('linearizability search walked off the history')
    if (entry.isCall) {
      const op = ops[entry.op]!
      const next = step(state, op)
      if (next !== undefined) {
        const w = entry.op >>> 5
        const bit = 1 << (entry.op & 31)
        words[w] = words[w]! | bit
        const k = bitKey() + (next === null ? '\u0000' : `=${next}`)
        if (!seen.has(k)) {
          seen.add(k)
          calls.push({ node: entry, state })
          state = next
          if (known[entry.op]) remainingKnown--
          lift(entry)
          entry = head.next
          continue
        }
        words[w] = words[w]! & ~bit
      }
      entry = entry.next
    } else {
      // A return whose operation is not linearized yet: everything that could go before it has
      // been tried from this state. Record how far we got, then undo the latest choice.
      if (best === null || calls.length > best.linearized.length) {
        const pending: number[] = []
        for (let e = head.next; e !== null && e !== entry.next; e = e.next) if (e.isCall || e === entry) pending.push(e.op)
        best = { linearized: calls.map((c) => c.node.op), state, pending: [...new Set(pending)] }
      }
      const top = calls.pop()
      if (!top) return { ok: false, key, steps, explanation: explain(key, ops, best!) }
      entry = top.node
      state = top.state
      words[entry.op >>> 5] = words[entry.op >>> 5]! & ~(1 << (entry.op & 31))
      if (known[entry.op]) remainingKnown++
      unlift(entry)
      entry = entry.next
    }
  }
  return { ok: true, key, steps }
}

function explain(key: string, ops: readonly HistoryOp[], best: { linearized: number[]; state: Value; pending: number[] }): string {
  const lines = [`history of key ${key} is not linearizable (${ops.length} operations).`]
  const tail = best.linearized.slice(-8)
  lines.push(`Longest linearizable prefix: ${best.linearized.length} operations, ending with:`)
  for (const i of tail) lines.push(`  ${formatOp(ops[i]!)}`)
  lines.push(`leaving the register at ${JSON.stringify(best.state)}; then none of these fits next:`)
  for (const i of best.pending) lines.push(`  ${formatOp(ops[i]!)}`)
  return lines.join('\n')
}
