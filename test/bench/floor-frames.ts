// The wire of the floor servers (replication-floor.ts, forward-floor.ts): a frame is
// [u32 length][u32 id][payload], and its acknowledgement the [u32 id] alone. As little as a
// message between two processes can be, so that the floors cost no more than they must.

import type { Socket } from 'node:net'

/** A frame of `payload` under `id`. */
export function frameOf(id: number, payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(8 + payload.length)
  frame.writeUInt32BE(4 + payload.length, 0)
  frame.writeUInt32BE(id, 4)
  frame.set(payload, 8)
  return frame
}

/**
 * Calls `handle` with each whole frame arriving on `socket` (its id and payload, 4 + n bytes);
 * destroys the socket on a frame longer than `maxBytes`.
 */
export function onFrames(socket: Socket, maxBytes: number, handle: (frame: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0)
      if (length < 4 || length > maxBytes) {
        socket.destroy(new Error(`frame of ${length} bytes`))
        return
      }
      if (pending.length < 4 + length) break
      handle(pending.subarray(4, 4 + length))
      pending = pending.subarray(4 + length)
    }
  })
}

/** Calls `handle` with the id of each acknowledgement arriving on `socket`. */
export function onAcks(socket: Socket, handle: (id: number) => void): void {
  let pending: Buffer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk
    let at = 0
    for (; at + 4 <= pending.length; at += 4) handle(pending.readUInt32BE(at))
    pending = pending.subarray(at)
  })
}
