// The vocabulary of the pure Raft core: ids, log entries, membership, messages, and the Ready
// hand-off. Nothing here does IO; the driver (cp/node) moves these values to disk and network.
//
// Section numbers refer to Ongaro and Ousterhout, "In Search of an Understandable Consensus
// Algorithm (Extended Version)", and to Ongaro's thesis (2014) where noted.

/** A node's identity: stable across restarts and address changes. */
export type NodeId = string

export type EntryType = 'normal' | 'noop' | 'config'

export interface Entry {
  readonly index: number
  readonly term: number
  readonly type: EntryType
  /** normal: the state machine command (opaque to Raft); config: a ConfigChange; noop: ''. */
  readonly data: string
}

/** Who takes part: voters count toward quorums, learners only receive the log. */
export interface Membership {
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
  /**
   * Where peers reach members added by a change (host:port). Opaque to the core, which only
   * carries it: through the log every node learns a new member's address with its membership.
   * Members of the first configuration are found by the addresses each node was started with.
   */
  readonly addresses?: Readonly<Record<NodeId, string>>
}

/**
 * One server at a time (thesis 4.1): add a learner, promote it, or remove a node; or record that a
 * member is now reached at another address (the same voters and learners, so no quorum changes:
 * it is a configuration entry only so that every node learns the address in log order).
 */
export type ConfigChange =
  | { readonly op: 'addLearner'; readonly id: NodeId; readonly address?: string }
  | { readonly op: 'promote'; readonly id: NodeId }
  | { readonly op: 'remove'; readonly id: NodeId }
  | { readonly op: 'setAddress'; readonly id: NodeId; readonly address: string }

/** What must be on disk before any message that depends on it is sent (5.1, 5.2). */
export interface HardState {
  readonly term: number
  readonly vote: NodeId | null
  readonly commit: number
}

export interface SnapshotMeta {
  /** The last entry the snapshot covers, and its term. */
  readonly index: number
  readonly term: number
  /** The membership as of that entry. */
  readonly membership: Membership
}

export type Role = 'follower' | 'candidate' | 'leader' | 'learner'

export type Message =
  /** PreVote (thesis 9.6): would you vote for me at `term`? Changes no one's term. */
  | { readonly type: 'preVote'; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly lastIndex: number; readonly lastTerm: number }
  | { readonly type: 'preVoteResp'; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly granted: boolean }
  /** RequestVote (5.2, 5.4.1). `transfer`: sent after TimeoutNow, so lease checks do not apply. */
  | { readonly type: 'vote'; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly lastIndex: number; readonly lastTerm: number; readonly transfer: boolean }
  | { readonly type: 'voteResp'; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly granted: boolean }
  /** AppendEntries (5.3). */
  | {
      readonly type: 'append'
      readonly from: NodeId
      readonly to: NodeId
      readonly term: number
      readonly prevIndex: number
      readonly prevTerm: number
      readonly entries: readonly Entry[]
      readonly commit: number
    }
  /**
   * success: `index` is the follower's last index matching the leader's log. Rejected: `index`
   * is the prevIndex that failed, and `hintIndex`/`hintTerm` say where the follower's log can
   * meet the leader's (the last index <= prevIndex whose term is <= the leader's prevTerm), so
   * the leader skips a whole conflicting term per round trip instead of one entry.
   */
  | {
      readonly type: 'appendResp'
      readonly from: NodeId
      readonly to: NodeId
      readonly term: number
      readonly success: boolean
      readonly index: number
      readonly hintIndex: number
      readonly hintTerm: number
    }
  /** Leader liveness and commit propagation; `context` carries ReadIndex rounds (thesis 6.4). */
  | { readonly type: 'heartbeat'; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly commit: number; readonly context: number }
  | { readonly type: 'heartbeatResp'; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly context: number }
  /**
   * InstallSnapshot (7). The core names the snapshot; the driver streams its data in bounded
   * chunks and delivers this message to the follower's core once the data is staged.
   */
  | { readonly type: 'snapshot'; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly meta: SnapshotMeta }
  /** Leadership transfer (thesis 3.10): start an election now. */
  | { readonly type: 'timeoutNow'; readonly from: NodeId; readonly to: NodeId; readonly term: number }

export type MessageType = Message['type']

/** A linearizable read point (thesis 6.4): local state at `index` or later may serve `id`. */
export interface ReadState {
  readonly id: number
  readonly index: number
}

/**
 * What the driver must do, in this order (the etcd-io/raft contract):
 * 1. persist `hardState` (when present) and append `entries` to the log, durably, truncating any
 *    conflicting suffix (entries[0].index and after are replaced); install `snapshot` if present;
 * 2. send `messages`;
 * 3. apply `committed` entries to the state machine in order, and answer `readStates` once
 *    applied index >= their index;
 * 4. call advance(ready).
 * A leader may send before its own fsync: its own log counts toward a quorum only once the driver
 * reports it persisted (advance does that), so sending early is safe (thesis 10.2.1).
 */
export interface Ready {
  readonly hardState: HardState | null
  readonly entries: readonly Entry[]
  readonly snapshot: SnapshotMeta | null
  readonly messages: readonly Message[]
  readonly committed: readonly Entry[]
  readonly readStates: readonly ReadState[]
}

/** The volatile state the driver shows (status, routing of forwarded requests). */
export interface SoftState {
  readonly role: Role
  readonly leader: NodeId | null
  readonly term: number
}
