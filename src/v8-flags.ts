// V8 settings for a long-running server, applied by bin/grace.js before the server's code loads
// (and by the benchmarks' roof server, so that Grace/roof compares code, not settings).
//
// V8 optimizes a function once it has run a budget of bytecode (--interrupt-budget, 132 KB by
// default, tuned for pages that run code briefly). A request runs each of the many small
// functions on its path once, so a fresh server ran its hot path unoptimized for its first few
// thousand requests (seconds at one client). A server's code is long-lived and its hot path is
// worth optimizing early.

import v8 from 'node:v8'

export const SERVER_V8_FLAGS = ['--interrupt-budget=16384'] as const

/** Call before importing the code the flags are for: functions created earlier keep their budget. */
export function applyServerV8Flags(): void {
  for (const flag of SERVER_V8_FLAGS) v8.setFlagsFromString(flag)
}
