// The error an in-memory peer network (test/unit/ap/node/fake-network.ts, test/sim/distro-network.ts)
// rejects a call with: shaped like the real transport's PeerError (code) and remote refusals
// (remoteCode), so the driver under test handles it as it would the real one.

export class CallError extends Error {
  constructor(
    readonly code: 'TIMEOUT' | 'UNREACHABLE' | 'REMOTE',
    message: string,
    readonly remoteCode: string | null = null,
  ) {
    super(message)
  }
}
