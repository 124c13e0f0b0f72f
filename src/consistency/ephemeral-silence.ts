// The wire form of the question an owner asks the other members before it removes clients that
// stopped beating (naming/leases.ts PeerSilence), and of their answers.
//
// 'naming.silence': the request is a JSON array of client ids; the answer a JSON object from
// client id to the milliseconds since the answering node last heard from that client (a beat or
// registration it took under its lease, or one it forwarded, or had before it handed the lease
// over: naming/leases.ts silences), for those it heard from recently. Removals are rare and come in sweeps of at most SWEEP_CHUNK
// clients, so JSON's cost does not matter here; what is received is checked all the same.

import { GraceError } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import { SWEEP_CHUNK } from '../naming/leases.js'

export const SILENCE_METHOD = 'naming.silence'
/** The most clients one question names: a sweep's chunk. */
export const MAX_SILENCE_CLIENTS = SWEEP_CHUNK

function refuse(what: string): never {
  throw new GraceError('INVALID_ARGUMENT', `naming.silence: ${what}`)
}

function parseJson(payload: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'))
  } catch {
    return refuse('the payload is not JSON')
  }
}

function isClientId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && Buffer.byteLength(id, 'utf8') <= LIMITS.maxNameBytes
}

export function encodeSilenceQuestion(clientIds: readonly string[]): Uint8Array {
  return Buffer.from(JSON.stringify(clientIds), 'utf8')
}

export function decodeSilenceQuestion(payload: Uint8Array): string[] {
  const ids = parseJson(payload)
  if (!Array.isArray(ids)) refuse('the question is not a list of client ids')
  if (ids.length > MAX_SILENCE_CLIENTS) refuse(`the question names ${ids.length} clients, more than ${MAX_SILENCE_CLIENTS}`)
  if (!ids.every(isClientId)) refuse('a client id is not a name')
  return ids
}

export function encodeSilenceAnswer(silences: ReadonlyMap<string, number>): Uint8Array {
  return Buffer.from(JSON.stringify(Object.fromEntries(silences)), 'utf8')
}

/** The answer, kept only for the clients asked about. */
export function decodeSilenceAnswer(payload: Uint8Array, asked: readonly string[]): Map<string, number> {
  const answer = parseJson(payload)
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) refuse('the answer is not an object')
  const out = new Map<string, number>()
  const silences = answer as Record<string, unknown>
  for (const id of asked) {
    if (!Object.prototype.hasOwnProperty.call(silences, id)) continue
    const ms = silences[id]
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) refuse(`the silence of ${id} is not a number of milliseconds`)
    out.set(id, ms)
  }
  return out
}

/** A member to ask, and whether the question fails when it does not answer. */
export interface SilencePeer {
  readonly id: string
  readonly mustAnswer: boolean
}

/**
 * Asks the members about the clients; per client, the least silence any of them reports. A
 * member that must answer and does not fails the whole question, except one that does not know
 * the method (NOT_FOUND: a node of an older version during a rolling upgrade), which holds no
 * lease it could tell of. The failure of a member that need not answer counts as hearing nothing.
 */
export async function askSilence(
  call: (to: string, method: string, payload: Uint8Array) => Promise<Uint8Array>,
  peers: readonly SilencePeer[],
  clientIds: readonly string[],
): Promise<Map<string, number>> {
  const question = encodeSilenceQuestion(clientIds)
  const answers = await Promise.all(
    peers.map((peer) =>
      call(peer.id, SILENCE_METHOD, question).catch((err: { remoteCode?: string | null }) => {
        if (err.remoteCode === 'NOT_FOUND' || !peer.mustAnswer) return null
        throw err
      }),
    ),
  )
  const heard = new Map<string, number>()
  for (const answer of answers) {
    if (answer === null) continue
    for (const [id, ms] of decodeSilenceAnswer(answer, clientIds)) heard.set(id, Math.min(ms, heard.get(id) ?? Infinity))
  }
  return heard
}
