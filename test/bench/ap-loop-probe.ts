// A preload for ap-probe.ts (`node --import <this file> bin/grace.js ...`): the event-loop delay
// (perf_hooks.monitorEventLoopDelay, 1 ms resolution), the GC pauses (a PerformanceObserver) and
// the main thread's longest turns, written to $GRACE_LOOP_PROBE_DIR/loop-<pid>.json on SIGUSR2
// and reset, so that a measured window starts clean. Grace itself has no such endpoint: this adds
// none and does nothing without the variable.

import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Session } from 'node:inspector'
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks'

const dir = process.env.GRACE_LOOP_PROBE_DIR
if (dir) {
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const gcKinds = ['', 'minor', 'major', '', 'incremental', '', '', '', 'weakcb']
  let gc: Record<string, { count: number; ms: number; maxMs: number }> = {}
  const gcLong: number[] = []
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = gcKinds[(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0] || 'other'
      const s = (gc[kind] ??= { count: 0, ms: 0, maxMs: 0 })
      s.count++
      s.ms += e.duration
      s.maxMs = Math.max(s.maxMs, e.duration)
      if (e.duration >= 5) gcLong.push(Math.round(e.duration * 10) / 10)
    }
  }).observe({ entryTypes: ['gc'] })
  let started = performance.now()
  // GRACE_LOOP_PROBE_PROFILE=cpu|alloc: each window is also profiled (the CPU, or a sample of
  // every allocation, those the GC has collected since included), written as <kind>-<pid>-<n>.json.
  const profile = process.env.GRACE_LOOP_PROBE_PROFILE
  const session = profile ? new Session() : null
  session?.connect()
  let windows = 0
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session!.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))))
  const startProfile = async () => {
    if (profile === 'cpu') {
      await post('Profiler.enable')
      await post('Profiler.setSamplingInterval', { interval: 200 })
      await post('Profiler.start')
    } else if (profile === 'alloc') {
      await post('HeapProfiler.enable')
      await post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
    }
  }
  const stopProfile = async () => {
    const n = windows++
    if (profile === 'cpu') {
      const { profile: p } = (await post('Profiler.stop')) as { profile: unknown }
      writeFileSync(join(dir!, `cpu-${process.pid}-${n}.cpuprofile`), JSON.stringify(p))
    } else if (profile === 'alloc') {
      const { profile: p } = (await post('HeapProfiler.stopSampling')) as { profile: unknown }
      writeFileSync(join(dir!, `alloc-${process.pid}-${n}.heapprofile`), JSON.stringify(p))
    }
  }
  void startProfile()
  process.on('SIGUSR2', async () => {
    if (session) {
      await stopProfile()
      await startProfile()
    }
    const ms = (ns: number) => Math.round(ns / 1e4) / 100
    const sample = {
      windowMs: Math.round(performance.now() - started),
      delay: { p50: ms(delay.percentile(50)), p90: ms(delay.percentile(90)), p99: ms(delay.percentile(99)), p999: ms(delay.percentile(99.9)), max: ms(delay.max), mean: ms(delay.mean), count: delay.count },
      gc,
      gcLong,
    }
    const path = join(dir, `loop-${process.pid}.json`)
    writeFileSync(`${path}.tmp`, JSON.stringify(sample))
    renameSync(`${path}.tmp`, path)
    delay.reset()
    gc = {}
    gcLong.length = 0
    started = performance.now()
  })
}
