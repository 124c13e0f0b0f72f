// Every limit Grace enforces, in one place. A request past a limit gets a 4xx with a code;
// an internal queue past its limit pushes back instead of growing.

export const LIMITS = {
  /** Namespace, group, service, cluster, dataId, clientId: UTF-8 bytes. */
  maxNameBytes: 512,
  /** Instance metadata, keys plus values, UTF-8 bytes. */
  maxMetadataBytes: 16 * 1024,
  maxWeight: 10_000,
  /** Config content, UTF-8 bytes. */
  maxConfigContentBytes: 1024 * 1024,
  /** Config type label (text, json, yaml, ...). */
  maxConfigTypeBytes: 32,
  /** Request bodies of naming routes. Metadata is the largest part. */
  maxNamingBodyBytes: 64 * 1024,
  /** Request bodies of config routes: 1 MiB of content, JSON-escaped, fits. */
  maxConfigBodyBytes: 8 * 1024 * 1024,
  /** Instances in one service, and services in the registry. */
  maxInstancesPerService: 50_000,
  /** Ephemeral instances held by one client (one lease). */
  maxInstancesPerClient: 10_000,
  /**
   * One client's instances as JSON, UTF-8 bytes. A client's record travels whole between nodes in
   * one peer frame; half the frame leaves room for its versions and removals.
   */
  maxClientRecordBytes: 8 * 1024 * 1024,
  maxServices: 100_000,
  maxConfigs: 100_000,
  /** History entries kept per config; older ones are dropped as new ones come. */
  maxHistoryPerConfig: 100,
  /** Paging. */
  maxPageSize: 1000,
  /** Clusters named in one query. */
  maxClusterFilter: 64,
  /** Clusters of one service with settings (a health check). */
  maxClusterSettingsPerService: 1000,
  /** Server health probes: how often, how long one may take, the HTTP path. */
  minProbeIntervalMs: 1000,
  maxProbeIntervalMs: 3_600_000,
  minProbeTimeoutMs: 100,
  maxProbeTimeoutMs: 30_000,
  maxProbePathBytes: 1024,
  /** Probes in flight at once on the probing node (--probe-concurrency may lower it). */
  maxProbeConcurrency: 1024,
  /** Instances the probing node probes; beyond it, the rest are left out and a warning logged. */
  maxProbeTargets: 100_000,
  /** Long-poll: keys per request, requests held at once, and the hold time. */
  maxListenItems: 1000,
  maxListeners: 10_000,
  defaultListenTimeoutMs: 30_000,
  maxListenTimeoutMs: 120_000,
  /**
   * Naming watches (POST /v1/ns/watch): watches held at once per node, services per watch, the
   * hold time, the body, and the instances one answer carries inline (past it, changed lists
   * are named without their instances and the client reads them with GET).
   */
  maxWatchers: 10_000,
  maxWatchItems: 1000,
  defaultWatchTimeoutMs: 30_000,
  maxWatchTimeoutMs: 120_000,
  maxWatchBodyBytes: 1024 * 1024,
  maxWatchAnswerInstances: 20_000,
  /**
   * Delta fetch (GET /v1/ns/delta): service changes remembered per node (older ones make a
   * delta fall back to everything), and services one answer may carry.
   */
  maxDeltaChanges: 100_000,
  maxDeltaServices: 10_000,
  /** CP log: proposals written per fsync, and proposals waiting for one. */
  maxProposalsPerBatch: 1024,
  maxPendingProposals: 16_384,
  /** Peer transport: one frame (a Raft append, a snapshot chunk, a call and its answer). */
  maxPeerFrameBytes: 16 * 1024 * 1024,
  /** Peer transport: a frame before the handshake has authenticated the other side. */
  maxPeerHandshakeFrameBytes: 4096,
  /** Peer transport: frames and bytes queued for one peer; past either, Raft messages drop. */
  maxPeerQueueFrames: 4096,
  maxPeerQueueBytes: 32 * 1024 * 1024,
  /** Peer transport: calls to one peer awaiting an answer, and calls one connection serves at once. */
  maxPeerCallsInFlight: 1024,
  maxPeerServedInFlight: 1024,
  /** Peer transport: accepted connections that have not finished the handshake, and its deadline. */
  maxPeerPendingHandshakes: 64,
  peerHandshakeTimeoutMs: 5000,
} as const
