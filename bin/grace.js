#!/usr/bin/env node
// The `grace` command: starts a standalone server. Build first (npm run build; npm ci does it).
import v8 from 'node:v8'

// V8 optimizes a function once it has run a budget of bytecode (--interrupt-budget, 132 KB by
// default, tuned for pages that run code briefly). A request runs each of the many small
// functions on its path once, so a fresh server ran its hot path unoptimized for its first few
// thousand requests (seconds at one client). A server's code is long-lived and its hot path is
// worth optimizing early. Set before main.js is loaded, so that every function starts with it.
v8.setFlagsFromString('--interrupt-budget=16384')

const { main } = await import('../dist/src/main.js')
await main(process.argv.slice(2))
