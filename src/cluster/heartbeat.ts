// The server heartbeat's wire form: a MemberReport (members.ts) as JSON in UTF-8, both as the
// request of 'cluster.heartbeat' and as its answer, like the Raft driver's and Distro's calls.
// Decoding is strict and whole: a report with a missing field, a field of the wrong type or out
// of range is refused (INVALID_ARGUMENT, which the transport answers as an error code), so a peer
// of another version or with a bug can never put half a report in the table. Peers are
// authenticated by the transport; the id in a report must be the authenticated one.

import { GraceError } from '../core/errors.js'
import { NODE_ID_PATTERN } from '../core/validate.js'
import type { NodeId, Role } from '../cp/raft/types.js'
import type { MemberReport } from './members.js'
import { parsePeerAddress } from './transport.js'

export const HEARTBEAT_METHOD = 'cluster.heartbeat'
/** A report is a few hundred bytes; anything much larger is not one. */
export const MAX_HEARTBEAT_BYTES = 4096

const ROLES: readonly Role[] = ['follower', 'candidate', 'leader', 'learner']
const MAX_INDEX = Number.MAX_SAFE_INTEGER
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function malformed(what: string): never {
  throw new GraceError('INVALID_ARGUMENT', `malformed heartbeat: ${what}`)
}

export function encodeReport(report: MemberReport): Uint8Array {
  return encoder.encode(JSON.stringify(report))
}

/** Decodes and checks a report in full; `from` is the peer the transport authenticated. */
export function decodeReport(payload: Uint8Array, from: NodeId): MemberReport {
  if (payload.length > MAX_HEARTBEAT_BYTES) malformed(`${payload.length} bytes, over ${MAX_HEARTBEAT_BYTES}`)
  let raw: unknown
  try {
    raw = JSON.parse(decoder.decode(payload))
  } catch {
    malformed('not JSON')
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) malformed('not an object')
  const r = raw as Record<string, unknown>
  const id = r.id
  if (typeof id !== 'string' || !NODE_ID_PATTERN.test(id)) malformed('id is not a node id')
  if (id !== from) malformed(`sent by ${from} in the name of ${id}`)
  const role = r.role
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) malformed('role is not a Raft role')
  const leaderId = r.leaderId
  if (leaderId !== null && (typeof leaderId !== 'string' || !NODE_ID_PATTERN.test(leaderId))) malformed('leaderId is neither null nor a node id')
  let distro: MemberReport['distro'] = null
  if (r.distro !== null) {
    const d = r.distro
    if (typeof d !== 'object' || d === null || Array.isArray(d)) malformed('distro is neither null nor an object')
    const dd = d as Record<string, unknown>
    distro = { loaded: bool(dd.loaded, 'distro.loaded'), clients: count(dd.clients, 'distro.clients'), queuedSyncs: count(dd.queuedSyncs, 'distro.queuedSyncs') }
  }
  return {
    id,
    clientAddress: address(r.clientAddress, 'clientAddress'),
    peerAddress: address(r.peerAddress, 'peerAddress'),
    role: role as Role,
    term: count(r.term, 'term'),
    leaderId: leaderId as NodeId | null,
    commitIndex: count(r.commitIndex, 'commitIndex'),
    appliedIndex: count(r.appliedIndex, 'appliedIndex'),
    ready: bool(r.ready, 'ready'),
    distro,
  }
}

function count(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_INDEX) malformed(`${field} is not a whole number`)
  return value
}

function bool(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') malformed(`${field} is not true or false`)
  return value
}

function address(value: unknown, field: string): string | null {
  if (value === null) return null
  if (typeof value !== 'string') malformed(`${field} is neither null nor host:port`)
  try {
    parsePeerAddress(value)
  } catch {
    malformed(`${field} is not host:port`)
  }
  return value
}
