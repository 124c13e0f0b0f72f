// A small synchronous network of Raft cores for scenario tests: every message is delivered at
// once unless its link is cut, each node's driver follows the Ready contract (persist, send,
// apply, advance) in one step, and what was persisted is kept so a node can crash and restart.
// The deterministic simulator (test/sim) is the place for random delays and faults.

import { Raft, type RaftOptions } from '../../src/cp/raft/raft.js'
import type { Entry, HardState, Membership, Message, NodeId, Ready, SnapshotMeta } from '../../src/cp/raft/types.js'

export interface Disk {
  hardState: HardState
  entries: Entry[]
  snapshot: SnapshotMeta | null
}

export interface NetNode {
  raft: Raft
  disk: Disk
  applied: Entry[]
  readys: Ready[]
  readStates: { id: number; index: number }[]
  up: boolean
}

/** A seeded generator so that elections are reproducible. */
function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

export class RaftNet {
  readonly nodes = new Map<NodeId, NetNode>()
  /** Cut links, as "from->to". */
  readonly cut = new Set<string>()
  /** Messages dropped by the filter instead of delivered. */
  filter: ((m: Message) => boolean) | null = null
  readonly delivered: Message[] = []

  constructor(
    voters: NodeId[],
    private readonly opts: Partial<RaftOptions> = {},
    private readonly bootstrap: Membership = { voters, learners: [] },
  ) {
    voters.forEach((id) => this.add(id))
  }

  /** A node that starts empty, knowing the bootstrap membership. */
  add(id: NodeId, bootstrap: Membership = this.bootstrap): NetNode {
    const disk: Disk = { hardState: { term: 0, vote: null, commit: 0 }, entries: [], snapshot: null }
    const node: NetNode = { raft: this.makeRaft(id, disk, bootstrap), disk, applied: [], readys: [], readStates: [], up: true }
    this.nodes.set(id, node)
    return node
  }

  private makeRaft(id: NodeId, disk: Disk, bootstrap: Membership): Raft {
    const seed = [...id].reduce((a, c) => a * 31 + c.charCodeAt(0), 7)
    return new Raft(
      { id, random: lcg(seed), electionTicks: 10, heartbeatTicks: 1, ...this.opts },
      { hardState: disk.hardState, snapshot: disk.snapshot, entries: [...disk.entries], bootstrap },
    )
  }

  node(id: NodeId): NetNode {
    return this.nodes.get(id)!
  }

  /** Loses everything not persisted; restart() brings the node back from its disk. */
  crash(id: NodeId): void {
    this.node(id).up = false
  }

  restart(id: NodeId): void {
    const n = this.node(id)
    n.raft = this.makeRaft(id, n.disk, this.bootstrap)
    n.applied = n.applied.filter((e) => e.index <= (n.disk.snapshot?.index ?? 0))
    n.up = true
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue
      this.cut.add(`${id}->${other}`)
      this.cut.add(`${other}->${id}`)
    }
  }

  heal(): void {
    this.cut.clear()
  }

  /** Runs every driver and delivers every message until nothing is left to do. */
  pump(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      const outbox: Message[] = []
      for (const n of this.nodes.values()) {
        if (!n.up) continue
        while (n.raft.hasReady()) outbox.push(...this.drive(n))
      }
      if (outbox.length === 0) return
      for (const m of outbox) this.deliver(m)
    }
    throw new Error('pump did not settle')
  }

  /** One Ready handled as the contract says; returns the messages to send. */
  private drive(n: NetNode): readonly Message[] {
    const rd = n.raft.ready()
    n.readys.push(rd)
    if (rd.hardState) n.disk.hardState = rd.hardState
    if (rd.snapshot) {
      n.disk.snapshot = rd.snapshot
      n.disk.entries = []
      n.applied = n.applied.filter((e) => e.index <= rd.snapshot!.index)
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index
      n.disk.entries = n.disk.entries.filter((e) => e.index < first).concat(rd.entries)
    }
    n.applied.push(...rd.committed)
    n.readStates.push(...rd.readStates)
    n.raft.advance(rd)
    return rd.messages
  }

  private deliver(m: Message): void {
    const to = this.nodes.get(m.to)
    if (!to?.up || !this.nodes.get(m.from)?.up) return
    if (this.cut.has(`${m.from}->${m.to}`)) return
    if (this.filter && !this.filter(m)) return
    this.delivered.push(m)
    to.raft.step(m)
  }

  tick(ids: NodeId[] = [...this.nodes.keys()], times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const id of ids) if (this.node(id).up) this.node(id).raft.tick()
      this.pump()
    }
  }

  /** Ticks everyone until some node leads, or throws. */
  elect(maxTicks = 200): NodeId {
    for (let i = 0; i < maxTicks; i++) {
      this.tick()
      const l = this.leaders()
      if (l.length === 1) return l[0]!
    }
    throw new Error('no leader')
  }

  /** Ticks only `id` until it campaigns and the network settles. */
  campaign(id: NodeId, maxTicks = 100): void {
    for (let i = 0; i < maxTicks && this.node(id).raft.softState().role !== 'leader'; i++) this.tick([id])
  }

  leaders(): NodeId[] {
    return [...this.nodes.entries()].filter(([, n]) => n.up && n.raft.softState().role === 'leader').map(([id]) => id)
  }

  propose(id: NodeId, ...data: string[]): number {
    const index = this.node(id).raft.propose(data)
    this.pump()
    return index
  }

  appliedData(id: NodeId): string[] {
    return this.node(id).applied.filter((e) => e.type === 'normal').map((e) => e.data)
  }
}
