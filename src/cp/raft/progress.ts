// What the leader knows of each follower's log (5.3), and how it sends to it: probing one
// message at a time until it finds where the logs meet, then replicating with a bounded number
// of appends in flight (pipelining), or waiting while a snapshot is sent. Pure.

import type { NodeId } from './types.js'

export type ProgressState = 'probe' | 'replicate' | 'snapshot'

export class Progress {
  /** Highest index known to match the leader's log. */
  match = 0
  /** Next index to send. */
  next: number
  state: ProgressState = 'probe'
  /** In probe state: an append is out and unanswered, so wait (for a reply or a heartbeat tick). */
  probeSent = false
  /** In snapshot state: the snapshot's index; the follower resumes after it. */
  pendingSnapshot = 0
  /** Heard from since the last CheckQuorum round (thesis 6.2). */
  recentActive = false
  /** Last index of each append in flight, oldest first (pipelining bound). */
  private readonly inflight: number[] = []

  constructor(
    readonly id: NodeId,
    next: number,
    private readonly maxInflight: number,
  ) {
    this.next = next
  }

  becomeProbe(): void {
    // After a snapshot, resume right after it; otherwise right after what is known to match.
    this.next = this.state === 'snapshot' ? Math.max(this.match + 1, this.pendingSnapshot + 1) : this.match + 1
    this.state = 'probe'
    this.probeSent = false
    this.pendingSnapshot = 0
    this.inflight.length = 0
  }

  becomeReplicate(): void {
    this.state = 'replicate'
    this.next = this.match + 1
    this.pendingSnapshot = 0
    this.inflight.length = 0
  }

  becomeSnapshot(index: number): void {
    this.state = 'snapshot'
    this.pendingSnapshot = index
    this.inflight.length = 0
  }

  /** An acknowledgement up to index; false when it says nothing new (stale or duplicated). */
  maybeUpdate(index: number): boolean {
    let updated = false
    if (index > this.match) {
      this.match = index
      updated = true
      this.probeSent = false
    }
    if (index + 1 > this.next) this.next = index + 1
    while (this.inflight.length > 0 && this.inflight[0]! <= index) this.inflight.shift()
    return updated
  }

  /**
   * A rejection of the append at rejectedIndex, with the follower's hint of where the logs can
   * meet. False when the rejection is stale (it answers an older append than the current one).
   */
  maybeDecrease(rejectedIndex: number, resumeAt: number): boolean {
    if (this.state === 'replicate') {
      if (rejectedIndex <= this.match) return false
      this.next = this.match + 1
      return true
    }
    if (rejectedIndex !== this.next - 1) return false
    this.next = Math.max(Math.min(rejectedIndex, resumeAt + 1), this.match + 1, 1)
    this.probeSent = false
    return true
  }

  /** Records an append that ends at lastIndex. */
  sent(lastIndex: number, entries: number): void {
    if (this.state === 'replicate') {
      if (entries > 0) {
        this.next = lastIndex + 1
        this.inflight.push(lastIndex)
      }
    } else if (this.state === 'probe') {
      this.probeSent = true
    }
  }

  /** Whether to hold back appends to this follower for now. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent
      case 'replicate':
        return this.inflight.length >= this.maxInflight
      case 'snapshot':
        return true
    }
  }

  inflightCount(): number {
    return this.inflight.length
  }
}
