// Every bound the Distro core enforces, in one place (TigerBeetle's habit: a limit on every
// queue, batch, retry and table). The driver may pass smaller values in tests; production uses
// these.

export const DISTRO_LIMITS = {
  /**
   * How long a removal's tombstone is kept. It only has to outlive any delayed copy of an older
   * record still on its way: a sync batch gives up after `maxSyncAttempts` (33 s of backoff at
   * most), a pull or push answers within a request timeout. Ten minutes is a wide
   * margin. A tombstone collected too early is not fatal: verification still converges (see
   * digest.ts), at worst showing a removed client again until its owner expires it.
   */
  tombstoneTtlMs: 10 * 60_000,
  /** Tombstones held at once; past it the oldest go first. About 100 bytes each. */
  maxTombstones: 100_000,
  /**
   * Removed instances a live client's record remembers (records.ts), the newest kept. They stop
   * a concurrent or delayed copy from bringing a deregistered instance back; a client that
   * deregisters more than this many instances while staying alive loses that protection for the
   * oldest, as a tombstone does past its TTL.
   */
  maxRemovalsPerClient: 256,

  /**
   * Buckets in a verification summary. Fixed, because both sides of a comparison must bucket the
   * same way. 1024 buckets cost 12 KiB on the wire whatever the client count; at 100k clients a
   * bucket holds about 100, which is what a differing bucket costs to list.
   */
  digestBuckets: 1024,
  /**
   * Differing buckets asked for in one exact-digest request (about 6,400 clients, 300 KB, at 100k
   * clients per owner). A round sends as many requests as there are differing buckets to cover.
   */
  maxBucketsPerRequest: 64,
  /** Client records asked for in one pull request, or sent in one push; more go in more requests. */
  maxRecordsPerPull: 1000,
  /** Default verification period: each node sends its peers a summary this often. */
  verifyIntervalMs: 5_000,

  /**
   * Distinct clients queued for one peer. A change past it is not queued: the queue marks itself
   * overflowed and the driver runs a verification round with that peer, which finds and repairs
   * the difference (a bounded queue may lose messages; verification may not).
   */
  maxQueuedClients: 100_000,
  /** Sync batches sent to one peer and not yet answered (sync-queue.ts). */
  maxBatchesInFlight: 4,
  /**
   * One sync batch: at most this many records and this many bytes (but always one record). A
   * peer applies a batch in one turn of its event loop, about 10 µs a record with its naming
   * view, and the sender encodes a round's batches in one turn: at 1,000 records a lease sweep
   * that expired thousands of clients held each peer's HTTP requests up for 10 ms and more per
   * batch. Under a backlog, full batches leave as soon as a slot frees (sync-queue.ts
   * fullBatchReady), so throughput does not depend on this size.
   */
  maxBatchItems: 250,
  maxBatchBytes: 1024 * 1024,
  /** Retry backoff: base * 2^(attempt - 1), capped, with equal jitter. */
  baseBackoffMs: 100,
  maxBackoffMs: 10_000,
  /** Sends of one batch before it is abandoned to verification (16 to 33 s of backoff in all). */
  maxSyncAttempts: 10,
} as const

export type DistroLimits = typeof DISTRO_LIMITS
