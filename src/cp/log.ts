// The CP path's contract. Today one member implements it (cp/node/durable-log.ts); the Raft
// driver will implement the same interface, so nothing above this layer changes.

import type { BatchOp } from '../storage/db.js'

/** A state machine command: plain JSON data, with `type` naming the handler. */
export interface CpCommand {
  readonly type: string
}

/** A committed log entry as the state machine sees it. */
export interface LogEntry {
  /** Position in the log, from 1, without gaps. */
  readonly index: number
  /**
   * Milliseconds since the epoch, stamped once by the proposer (later: the leader). The state
   * machine uses it instead of reading a clock, so that replaying the log gives the same state.
   */
  readonly ts: number
  readonly command: CpCommand
  /**
   * The command exactly as JSON.stringify wrote it at the proposer, when the log has that text
   * (the Raft driver always does); parsing it gives `command`. A state machine that stores part
   * of a command as JSON may slice it from here instead of serializing it again: the text of a
   * value JSON.stringify wrote is what JSON.stringify writes for its parse, so the stored bytes
   * are the same, on every replica and every replay.
   */
  readonly commandJson?: string
}

/**
 * Applies committed entries in index order. apply must be deterministic: the same entries on the
 * same state give the same state and results on every node and on every replay.
 *
 * apply appends the storage writes its entry causes to `ops`; the log writes them in one atomic
 * batch together with the applied index. apply changes in-memory state only after it has decided
 * the entry is valid: it throws a GraceError for a command that is rejected (a compare-and-set
 * that does not match, say), and must then leave memory and `ops` as they were.
 */
export interface StateMachine {
  /**
   * Replaces the in-memory state with what storage holds: at startup, before any entry is
   * replayed, and after a snapshot from the leader replaced the stored state.
   */
  load(): Promise<void>
  apply(entry: LogEntry, ops: BatchOp[]): unknown
}

/** What a node knows of the CP log; /v1/cluster/status will show more once Raft is in. */
export interface CpStatus {
  readonly role: 'leader' | 'follower' | 'candidate' | 'learner'
  readonly commitIndex: number
  readonly appliedIndex: number
}

export interface ReplicatedLog {
  /**
   * Appends the command, waits until it is durable (fsynced on a quorum) and applied locally
   * (to the state machine's memory; its storage write may still be landing, see settled()),
   * and resolves with the state machine's result. Rejects with the GraceError the state machine
   * threw, or with UNAVAILABLE when the log cannot take writes now (closing, overloaded, no
   * quorum); a rejected UNAVAILABLE write may or may not have been applied.
   */
  propose(command: CpCommand): Promise<unknown>
  /**
   * Resolves once local state includes every write acknowledged before the call, so that a read
   * after it is linearizable.
   */
  readBarrier(): Promise<void>
  /**
   * Resolves once the state machine's storage holds every write applied so far: for reads that
   * go to storage without a barrier (stale reads) and must still see what was acknowledged.
   */
  settled(): Promise<void>
  status(): CpStatus
  /** Finishes the writes already taken, refuses new ones, and stops. Does not close storage. */
  close(): Promise<void>
}
