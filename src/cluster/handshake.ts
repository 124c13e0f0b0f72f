// The peer handshake's cryptography: nonces and the two MACs (proto/grace/peer/transport.proto
// has the message flow). Both MACs are HMAC-SHA256 keyed with the cluster secret over the same
// fields, the dialer's and the acceptor's ids and nonces, under two different labels:
//
//   ack mac     (acceptor proves the secret) = HMAC(secret, "grace-peer-v1|ack"   ‖ fields)
//   confirm mac (dialer proves the secret)   = HMAC(secret, "grace-peer-v1|hello" ‖ fields)
//
// Each field is written as a 4-byte big-endian length and its bytes, so no choice of ids can make
// two different field lists read the same. The acceptor's fresh nonce is inside the dialer's MAC,
// so a recorded handshake cannot be replayed; the labels differ, so an acceptor's MAC cannot be
// reflected back as a dialer's.
//
// What this does not do: encrypt, or protect frames after the handshake. An attacker who can
// rewrite traffic between two nodes can take over a connection; against that, run peer traffic
// on a private network or under TLS.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

export const PROTOCOL_VERSION = 1
export const NONCE_BYTES = 32
export const MAC_BYTES = 32
/** The cluster secret's minimum length, in UTF-8 bytes. */
export const MIN_SECRET_BYTES = 16
/** A node id on the wire, in UTF-8 bytes (the handshake frame limit bounds it too). */
export const MAX_NODE_ID_BYTES = 256

const ACK_LABEL = 'grace-peer-v1|ack'
const CONFIRM_LABEL = 'grace-peer-v1|hello'

export interface HandshakeFields {
  /** The node that dialed. */
  readonly dialerId: string
  /** The node that accepted. */
  readonly acceptorId: string
  readonly dialerNonce: Uint8Array
  readonly acceptorNonce: Uint8Array
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES)
}

function mac(secret: string, label: string, f: HandshakeFields): Buffer {
  const h = createHmac('sha256', secret)
  for (const part of [Buffer.from(label), Buffer.from(f.dialerId), Buffer.from(f.acceptorId), f.dialerNonce, f.acceptorNonce]) {
    const len = Buffer.allocUnsafe(4)
    len.writeUInt32BE(part.length, 0)
    h.update(len)
    h.update(part)
  }
  return h.digest()
}

/** The MAC the acceptor sends in HelloAck. */
export function ackMac(secret: string, f: HandshakeFields): Buffer {
  return mac(secret, ACK_LABEL, f)
}

/** The MAC the dialer sends in HelloConfirm. */
export function confirmMac(secret: string, f: HandshakeFields): Buffer {
  return mac(secret, CONFIRM_LABEL, f)
}

/** Compares in constant time; a MAC of the wrong length is simply wrong. */
export function macEquals(expected: Buffer, got: Uint8Array | null | undefined): boolean {
  if (!got || got.length !== expected.length) return false
  return timingSafeEqual(expected, got)
}

/** Why a node id is unacceptable on the wire, or null when it is fine. */
export function badNodeId(id: unknown): string | null {
  if (typeof id !== 'string' || id.length === 0) return 'node id is empty'
  if (Buffer.byteLength(id) > MAX_NODE_ID_BYTES) return `node id is over ${MAX_NODE_ID_BYTES} bytes`
  return null
}
