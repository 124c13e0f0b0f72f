// An in-memory Distro transport for the AP microbenchmarks (ap-micro.ts, ap-register.ts): peers in
// one process, each call answered on a later turn with copies of the bytes, as a socket would.
// Only a type comes from the build, so ap-register.ts can wire nodes of another checkout with it.

import type { DistroTransport } from '../../src/ap/node/distro-node.js'

/** Peers in one process: each call runs the handler on a later turn, with copies of the bytes. */
export class MemoryNet {
  private readonly handlers = new Map<string, Map<string, (from: string, p: Uint8Array) => Promise<Uint8Array>>>()

  transport(self: string): DistroTransport {
    const mine = new Map<string, (from: string, p: Uint8Array) => Promise<Uint8Array>>()
    this.handlers.set(self, mine)
    return {
      call: async (to, method, payload) => {
        const h = this.handlers.get(to)?.get(method)
        if (!h) throw new Error(`${to} does not serve ${method}`)
        await new Promise((r) => setImmediate(r))
        const answer = await h(self, Uint8Array.prototype.slice.call(payload))
        await new Promise((r) => setImmediate(r))
        return Uint8Array.prototype.slice.call(answer)
      },
      onCall: (method, handler) => {
        mine.set(method, handler)
      },
    }
  }
}
