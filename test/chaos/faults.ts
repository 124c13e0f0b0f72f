// Injecting one planned fault into the running cluster, holding it, and healing it, with a log of
// what was done and the impairment spans the AP check needs.

import type { ChaosNetwork } from './network.js'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChaosNodes } from './nodes.js'
import type { Impairments } from './checks.js'
import type { PlannedFault } from './schedule.js'

export interface InjectedFault {
  readonly kind: PlannedFault['kind']
  readonly targets: string[]
  readonly startMs: number
  endMs: number
  readonly detail: string
  /** Something went wrong healing it (a node that did not come back, a change refused). */
  problem?: string
}

export class FaultInjector {
  readonly injected: InjectedFault[] = []

  constructor(
    private readonly nodes: ChaosNodes,
    private readonly net: ChaosNetwork,
    private readonly impairments: Impairments,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
  ) {}

  async run(f: PlannedFault): Promise<void> {
    const ids = this.nodes.ids
    const leader = await this.nodes.leader()
    const pickFrom = (xs: readonly string[], salt = 0): string => xs[(f.pick + salt) % xs.length]!
    const random = pickFrom(ids)
    const begin = (targets: string[], detail: string): InjectedFault => {
      const fault: InjectedFault = { kind: f.kind, targets, startMs: this.now(), endMs: NaN, detail }
      this.injected.push(fault)
      this.log(`${fault.startMs} ms: ${f.kind} ${detail}`)
      for (const t of targets) this.impairments.open(t, fault.startMs)
      return fault
    }
    const end = (fault: InjectedFault): void => {
      fault.endMs = this.now()
      for (const t of fault.targets) this.impairments.close(t, fault.endMs)
      this.log(`${fault.endMs} ms: healed ${f.kind}${fault.problem ? ` (problem: ${fault.problem})` : ''}`)
    }
    switch (f.kind) {
      case 'kill': {
        const target = f.pick % 2 === 0 && leader ? leader : random
        const fault = begin([target], `SIGKILL ${target}${target === leader ? ' (the leader)' : ''}, restarted on its data after ${f.holdMs} ms`)
        await this.nodes.kill(target)
        await sleep(f.holdMs)
        await this.restart(target, fault)
        end(fault)
        return
      }
      case 'pause': {
        const target = f.pick % 2 === 0 && leader ? leader : random
        const fault = begin([target], `SIGSTOP ${target}${target === leader ? ' (the leader)' : ''}, SIGCONT after ${f.holdMs} ms`)
        this.nodes.pause(target)
        await sleep(f.holdMs)
        this.nodes.resume(target)
        end(fault)
        return
      }
      case 'partition-leader':
      case 'partition-minority': {
        const target = f.kind === 'partition-leader' && leader ? leader : random
        const others = ids.filter((id) => id !== target)
        const fault = begin([target], `${target}${target === leader ? ' (the leader)' : ''} cut off from ${others.join(' and ')} both ways for ${f.holdMs} ms`)
        for (const o of others) {
          await this.net.cut(target, o)
          await this.net.cut(o, target)
        }
        await sleep(f.holdMs)
        await this.net.heal()
        end(fault)
        return
      }
      case 'partition-asymmetric': {
        const from = random
        const to = pickFrom(ids.filter((id) => id !== from), 1)
        const fault = begin([from, to], `${from} cannot send to ${to} (${to} still reaches ${from}) for ${f.holdMs} ms`)
        await this.net.cut(from, to)
        await sleep(f.holdMs)
        await this.net.heal()
        end(fault)
        return
      }
      case 'degrade': {
        const how = { lossPercent: f.lossPercent, delayMs: f.delayMs, rateKbit: 2_000 }
        const fault = begin([], `${random} loses ${how.lossPercent}% of its outgoing packets, ${this.net.slowedBy === 'netem' ? `delayed ${how.delayMs} ms` : `link limited to ${how.rateKbit} kbit/s`}, for ${f.holdMs} ms`)
        await this.net.degrade(random, how)
        await sleep(f.holdMs)
        await this.net.heal()
        end(fault)
        return
      }
      case 'membership': {
        const target = random
        const via = () => ids.find((id) => id !== target && this.nodes.isRunning(id))!
        const fault = begin([target], `${target}${target === leader ? ' (the leader)' : ''} removed from the cluster, wiped, and added back as a new member after ${f.holdMs} ms`)
        // A retry after an unknown outcome (503) finds the change made: "not a member" is success.
        const removed = await this.retryAdmin(() => this.nodes.admin(via(), 'DELETE', `/v1/cluster/members/${target}`), /is not a member/)
        if (!removed) {
          fault.problem = `removing ${target} was not accepted in 30 s`
          end(fault)
          return
        }
        await this.nodes.kill(target)
        this.nodes.wipe(target)
        await sleep(f.holdMs)
        try {
          await this.nodes.start(target, { join: true })
        } catch (err) {
          fault.problem = `${target} did not start: ${(err as Error).message}`
          end(fault)
          return
        }
        const added = await this.retryAdmin(() => this.nodes.admin(via(), 'POST', '/v1/cluster/members', { id: target, address: this.nodes.peerAddress(target) }), /already a member/)
        if (!added) fault.problem = `adding ${target} back was not accepted in 30 s`
        else if (!(await this.promoted(target, 60_000))) fault.problem = `${target} was not a voter again within 60 s`
        end(fault)
        return
      }
    }
  }

  private async restart(id: string, fault: InjectedFault): Promise<void> {
    try {
      await this.nodes.start(id)
    } catch (err) {
      fault.problem = `${id} did not restart: ${(err as Error).message}`
    }
  }

  /** Retries a membership call while the cluster cannot take it yet (no leader, a change in flight). */
  private async retryAdmin(send: () => Promise<{ status: number; body: unknown }>, done: RegExp): Promise<boolean> {
    const deadline = Date.now() + 30_000
    let attempts = 0
    while (Date.now() < deadline) {
      try {
        const r = await send()
        if (r.status === 200) return true
        if (attempts > 0 && r.status === 409 && done.test(JSON.stringify(r.body))) return true
        this.log(`  membership call answered ${r.status} ${JSON.stringify(r.body)}`)
      } catch (err) {
        this.log(`  membership call failed: ${(err as Error).message}`)
      }
      attempts++
      await sleep(1_000)
    }
    return false
  }

  private async promoted(id: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const leader = await this.nodes.leader()
      const s = leader ? await this.nodes.status(leader) : null
      if (s?.membership.voters.includes(id)) return true
      await sleep(500)
    }
    return false
  }
}
