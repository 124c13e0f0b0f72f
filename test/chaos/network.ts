// Where the chaos harness's nodes live, and how their links are cut.
//
// With root, `ip` and `iptables`, every node gets its own network namespace, joined to the others
// by a veth pair and a bridge in the harness's namespace. Each node then has its own address, the
// harness (on the bridge) reaches every node's client port, and a node's links to its peers can be
// cut one way or both, or made lossy and slow, without touching the harness's own connections to
// it: the clients of an isolated node still reach it, as clients of a real isolated machine would.
//
// Cuts are iptables DROP rules in the sending node's OUTPUT chain: packets vanish silently, so a
// TCP connection stalls and times out as on a real cut cable, instead of failing at once. Delay
// and loss use `tc netem` where the kernel has it; where it does not (the netem scheduler is an
// optional kernel module), loss is an iptables rule dropping a random share of packets and delay
// is a token-bucket filter (tbf) that queues what exceeds a low rate: a slow link, not a fixed
// delay. The report says which was used.
//
// Without namespaces (not root, no `ip`), the nodes run on 127.0.0.1 with ports of their own, and
// only the process-level faults are possible; the harness says so.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { freePort } from '../helpers/cluster.js'

const run = promisify(execFile)

/**
 * Every name carries the harness's pid, so that runs side by side (two test runs) keep apart and
 * a run can clear what a dead one left behind. Interface names are at most 15 bytes.
 */
const LEFTOVER = /^gc([0-9a-f]{6})(?:-n.*|b)$/
const RUN = `gc${process.pid.toString(16).padStart(6, '0')}`
const BRIDGE = `${RUN}b`
/** A /24 of its own per run, from the pid (runs collide only if their pids are equal mod 8192). */
const SUBNET = `10.${200 + ((process.pid >> 8) & 31)}.${process.pid & 255}`
const HARNESS_IP = `${SUBNET}.1`
const CLIENT_PORT = 8848
const PEER_PORT = 9848

export interface NodeAddress {
  readonly host: string
  readonly clientPort: number
  readonly peerPort: number
}

export interface Degradation {
  /** Share of the node's outgoing packets dropped, 0..100. */
  readonly lossPercent: number
  /** Extra delay on the node's outgoing packets, where netem exists; otherwise a rate limit. */
  readonly delayMs: number
  /** The rate limit used instead of a delay where netem is missing. */
  readonly rateKbit: number
}

export interface ChaosNetwork {
  readonly kind: 'netns' | 'loopback'
  /** Why there are no namespaces, or how delay is made: for the report. */
  readonly notes: string[]
  /** How `degrade` slows a link: netem's delay, or a tbf rate limit where netem is missing. */
  readonly slowedBy: 'netem' | 'rate-limit' | null
  address(id: string): NodeAddress
  /** The command line that runs `argv` inside the node's network. */
  wrap(id: string, argv: string[]): string[]
  /** Drops every packet `from` sends to `to` (one way). */
  cut(from: string, to: string): Promise<void>
  degrade(id: string, how: Degradation): Promise<void>
  /** Removes every cut and degradation. */
  heal(): Promise<void>
  teardown(): Promise<void>
}

/** `namespaces: false` runs on loopback even where namespaces work (`--no-netns`). */
export async function setUpNetwork(ids: readonly string[], opts: { namespaces: boolean }): Promise<ChaosNetwork> {
  const why = opts.namespaces ? await whyNoNamespaces() : 'turned off with --no-netns'
  if (why) return loopbackNetwork(ids, why)
  await removeLeftovers()
  try {
    return await namespaceNetwork(ids)
  } catch (err) {
    await removeLeftovers()
    return loopbackNetwork(ids, `setting up network namespaces failed: ${firstLine(err)}`)
  }
}

async function whyNoNamespaces(): Promise<string | null> {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'network namespaces need root'
  for (const tool of ['ip', 'iptables']) {
    try {
      await run('sh', ['-c', `command -v ${tool}`])
    } catch {
      return `${tool} is not installed`
    }
  }
  const probe = `${RUN}-nprobe`
  try {
    await run('ip', ['netns', 'add', probe])
    await run('ip', ['netns', 'exec', probe, 'iptables', '-L', 'OUTPUT'])
  } catch (err) {
    return `cannot create a network namespace with iptables in it: ${firstLine(err)}`
  } finally {
    await run('ip', ['netns', 'del', probe]).catch(() => {})
  }
  return null
}

const nsName = (id: string): string => `${RUN}-${id}`
const vethName = (id: string): string => `${RUN}v${id}`

async function sh(args: string[]): Promise<void> {
  await run(args[0]!, args.slice(1))
}

/** Removes what this run, or a run whose process is gone, left: namespaces, bridges, rules. */
async function removeLeftovers(): Promise<void> {
  const mine = (name: string): boolean => {
    const m = LEFTOVER.exec(name)
    return m !== null && (name.startsWith(RUN) || !alive(parseInt(m[1]!, 16)))
  }
  const { stdout: namespaces } = await run('ip', ['netns', 'list']).catch(() => ({ stdout: '' }))
  for (const name of namespaces.split('\n').map((l) => l.split(' ')[0]!)) {
    if (!mine(name)) continue
    await killNamespaceProcesses(name)
    await run('ip', ['netns', 'del', name]).catch(() => {})
  }
  const { stdout: links } = await run('ip', ['-o', 'link', 'show', 'type', 'bridge']).catch(() => ({ stdout: '' }))
  for (const bridge of links.split('\n').map((l) => l.split(':')[1]?.trim() ?? '')) {
    if (!mine(bridge)) continue
    await run('ip', ['link', 'del', bridge]).catch(() => {})
    // Docker (and others) set the FORWARD policy to DROP, and bridged frames pass through it when
    // br_netfilter is loaded: each run adds a rule letting its bridge's own traffic through.
    while (await run('iptables', ['-D', 'FORWARD', '-i', bridge, '-o', bridge, '-j', 'ACCEPT']).then(() => true, () => false)) {}
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function killNamespaceProcesses(ns: string): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'pids', ns]).catch(() => ({ stdout: '' }))
  for (const pid of stdout.split('\n').map(Number).filter((p) => p > 0)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
}

async function namespaceNetwork(ids: readonly string[]): Promise<ChaosNetwork> {
  await sh(['ip', 'link', 'add', BRIDGE, 'type', 'bridge'])
  await sh(['ip', 'addr', 'add', `${HARNESS_IP}/24`, 'dev', BRIDGE])
  await sh(['ip', 'link', 'set', BRIDGE, 'up'])
  await sh(['iptables', '-I', 'FORWARD', '-i', BRIDGE, '-o', BRIDGE, '-j', 'ACCEPT'])
  const ipOf = new Map(ids.map((id, i) => [id, `${SUBNET}.${11 + i}`]))
  for (const id of ids) {
    const ns = nsName(id)
    await sh(['ip', 'netns', 'add', ns])
    await sh(['ip', 'link', 'add', vethName(id), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await sh(['ip', 'link', 'set', vethName(id), 'master', BRIDGE, 'up'])
    await sh(['ip', '-n', ns, 'addr', 'add', `${ipOf.get(id)}/24`, 'dev', 'eth0'])
    await sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
    await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
  }
  const hasNetem = await run('ip', ['netns', 'exec', nsName(ids[0]!), 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem', 'delay', '1ms']).then(
    async () => {
      await run('ip', ['netns', 'exec', nsName(ids[0]!), 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root'])
      return true
    },
    () => false,
  )
  const notes = [
    `each node in its own network namespace (${ids.map(nsName).join(', ')}), on bridge ${BRIDGE} (${SUBNET}.0/24); cuts are iptables DROP rules`,
    hasNetem
      ? 'delay and loss: tc netem'
      : 'delay and loss: this kernel has no tc netem, so loss is an iptables rule dropping a random share of packets and delay is a tbf rate limit (a slow link)',
  ]
  const inNs = (id: string, argv: string[]): Promise<void> => sh(['ip', 'netns', 'exec', nsName(id), ...argv])
  return {
    kind: 'netns',
    notes,
    slowedBy: hasNetem ? 'netem' : 'rate-limit',
    address: (id) => ({ host: ipOf.get(id)!, clientPort: CLIENT_PORT, peerPort: PEER_PORT }),
    wrap: (id, argv) => ['ip', 'netns', 'exec', nsName(id), ...argv],
    async cut(from, to) {
      await inNs(from, ['iptables', '-A', 'OUTPUT', '-d', ipOf.get(to)!, '-j', 'DROP'])
    },
    async degrade(id, how) {
      if (hasNetem) {
        await inNs(id, ['tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem', 'delay', `${how.delayMs}ms`, `${Math.round(how.delayMs / 2)}ms`, 'loss', `${how.lossPercent}%`])
        return
      }
      await inNs(id, ['iptables', '-A', 'OUTPUT', '-o', 'eth0', '-m', 'statistic', '--mode', 'random', '--probability', String(how.lossPercent / 100), '-j', 'DROP'])
      await inNs(id, ['tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', `${how.rateKbit}kbit`, 'burst', '16kb', 'latency', '500ms'])
    },
    async heal() {
      for (const id of ids) {
        await inNs(id, ['iptables', '-F', 'OUTPUT'])
        await inNs(id, ['tc', 'qdisc', 'del', 'dev', 'eth0', 'root']).catch(() => {})
      }
    },
    teardown: removeLeftovers,
  }
}

async function loopbackNetwork(ids: readonly string[], why: string): Promise<ChaosNetwork> {
  const addresses = new Map<string, NodeAddress>()
  for (const id of ids) addresses.set(id, { host: '127.0.0.1', clientPort: await freePort(), peerPort: await freePort() })
  const unavailable = async (): Promise<void> => {
    throw new Error(`network faults need network namespaces: ${why}`)
  }
  return {
    kind: 'loopback',
    slowedBy: null,
    notes: [`no network namespaces (${why}): the nodes run on 127.0.0.1 and only process-level faults are injected`],
    address: (id) => addresses.get(id)!,
    wrap: (_id, argv) => argv,
    cut: unavailable,
    degrade: unavailable,
    heal: async () => {},
    teardown: async () => {},
  }
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: string; message?: string }
  return String(e.stderr || e.message || err).split('\n')[0]!.trim()
}
