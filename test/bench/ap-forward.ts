// `node dist/test/bench/ap-forward.js [--op beat|register] [--calls N] [--conc N] [--reps N]`
//
// CPU per forwarded beat (or registration) on the peer path alone, steady on a busy machine: two
// real peer transports (cluster/transport.ts, authenticated TCP on loopback) in this one process,
// so the process CPU time covers both ends. The caller encodes changes as
// EphemeralCluster.forward does (consistency/ephemeral-forward.ts), --conc of them in flight as
// under the AP benchmark's load; the callee decodes and checks each as the owner does and
// answers as it would (no naming service behind it). What is left out is HTTP and the owner's
// apply, which ap-register.ts, ap-cpu.ts and ap-probe.ts measure with the rest. Registrations
// are the AP benchmark's (a new address each, service bench-ap-eph).

import { parseArgs } from 'node:util'
import { PeerTransport } from '../../src/cluster/transport.js'
import {
  REGISTER_ANSWER,
  decodeBeatAnswer,
  decodeForwardedBeat,
  decodeForwardedRegistration,
  decodeRegisterAnswer,
  encodeBeatAnswer,
  encodeForward,
} from '../../src/consistency/ephemeral-forward.js'
import { silentLogger } from '../../src/core/logger.js'
import type { BeatResult, EphemeralOp } from '../../src/naming/service.js'
import { parseInstance } from '../../src/naming/validate.js'

const { values: opts } = parseArgs({
  options: {
    op: { type: 'string', default: 'beat' },
    calls: { type: 'string', default: '60000' },
    conc: { type: 'string', default: '64' },
    reps: { type: 'string', default: '5' },
  },
})
const CALLS = Number(opts.calls)
const CONC = Number(opts.conc)
const REPS = Number(opts.reps)
const SECRET = 'ap-forward-bench-secret-0123456789'
const RESULT: BeatResult = { clientBeatInterval: 5000, registered: true }
const IDS = Array.from({ length: 1000 }, (_, i) => `bench-ap-beat-${i}`)
const REGISTER = opts.op === 'register'
if (!REGISTER && opts.op !== 'beat') throw new Error(`--op ${opts.op}: beat or register`)
/** The k-th change sent, as the entry node hands it to EphemeralCluster.forward. */
function change(k: number): EphemeralOp {
  if (!REGISTER) return { op: 'beat', request: { clientId: IDS[k % IDS.length]! } }
  return { op: 'register', instance: parseInstance({ service: 'bench-ap-eph', ip: `10.0.${(k >> 8) & 255}.${k & 255}`, port: 20_000 + ((k >> 16) % 1000), weight: 1, ephemeral: true }) }
}

const listen = { host: '127.0.0.1', port: 0 }
const entry = new PeerTransport({ selfId: 'entry', listen, peers: {}, secret: SECRET, logger: silentLogger, acceptUnknownPeers: true })
const owner = new PeerTransport({ selfId: 'owner', listen, peers: {}, secret: SECRET, logger: silentLogger, acceptUnknownPeers: true })
await entry.start()
await owner.start()
entry.setPeers({ owner: `127.0.0.1:${owner.port}` })
owner.setPeers({ entry: `127.0.0.1:${entry.port}` })
const method = encodeForward(change(0)).method
owner.onCall(method, async (_from, payload) => {
  if (REGISTER) {
    decodeForwardedRegistration(payload)
    return REGISTER_ANSWER
  }
  decodeForwardedBeat(payload)
  return encodeBeatAnswer(RESULT)
})
while (!entry.isConnected('owner')) await new Promise((r) => setTimeout(r, 10))

async function run(n: number): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < n) {
      const { method, payload } = encodeForward(change(next++))
      const answer = await entry.call('owner', method, payload, 5_000)
      if (REGISTER) decodeRegisterAnswer(answer)
      else decodeBeatAnswer(answer)
    }
  }
  await Promise.all(Array.from({ length: CONC }, worker))
}

await run(5_000) // warm up the JIT
const perCall: number[] = []
for (let r = 0; r < REPS; r++) {
  const start = process.cpuUsage()
  await run(CALLS)
  const used = process.cpuUsage(start)
  perCall.push((used.user + used.system) / CALLS)
}
const sorted = [...perCall].sort((a, b) => a - b)
console.log(
  `CPU per forwarded ${REGISTER ? 'registration' : 'beat'} (both ends, ${CONC} in flight): median ${sorted[Math.floor(REPS / 2)]!.toFixed(2)} µs, min ${sorted[0]!.toFixed(2)} (${perCall.map((v) => v.toFixed(1)).join(' ')})`,
)
await entry.close()
await owner.close()
