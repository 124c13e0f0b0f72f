// V8 settings for a long-running server, applied by bin/grace.js before the server's code loads
// (and by the benchmarks' roof server, so that Grace/roof compares code, not settings).

import { createHook } from 'node:async_hooks'
import v8 from 'node:v8'

// V8 optimizes a function once it has run a budget of bytecode (--interrupt-budget, 132 KB by
// default, tuned for pages that run code briefly). A request runs each of the many small
// functions on its path once, so a fresh server ran its hot path unoptimized for its first few
// thousand requests (seconds at one client). A server's code is long-lived and its hot path is
// worth optimizing early.
export const SERVER_V8_FLAGS = ['--interrupt-budget=16384'] as const

/** Call before importing the code the flags are for: functions created earlier keep their budget. */
export function tuneV8ForServer(): void {
  for (const flag of SERVER_V8_FLAGS) v8.setFlagsFromString(flag)
  pinTickObjectShape()
}

let pinnedTickObject: object | undefined

/**
 * Keeps one of node's nextTick objects alive for the life of the process.
 *
 * process.nextTick builds its queue entry as an object literal with two computed (symbol) keys.
 * V8 defines such properties through a feedback slot that remembers the object's map weakly.
 * Once a few major GCs pass while no tick object is alive (an idle server: memory-reducing GCs
 * run then), the maps die, the slots are cleared, and V8 marks them megamorphic for good: it
 * does not go back to monomorphic for these. From then on every nextTick, several per HTTP
 * request in node's streams, defines its four properties in the runtime: 7 % of the server's CPU
 * on the query benchmark at 64 connections where it happened (perf). A live tick object holds its map, and
 * through the maps' back pointers the whole chain the slots remember.
 *
 * The object is caught with an async hook's init, the only place node hands it out; the hook is
 * off again before this returns. Answers whether a tick object was caught.
 */
export function pinTickObjectShape(): boolean {
  if (pinnedTickObject) return true
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && pinnedTickObject === undefined) pinnedTickObject = resource as object
    },
  })
  hook.enable()
  try {
    process.nextTick(() => {})
  } finally {
    hook.disable()
  }
  return pinnedTickObject !== undefined
}
