#!/usr/bin/env node
// The `grace` command: starts a standalone server. Build first (npm run build; npm ci does it).
import { applyServerV8Flags } from '../dist/src/v8-flags.js'

// Before main.js loads, so that every function of the server starts with them (v8-flags.ts).
applyServerV8Flags()

const { main } = await import('../dist/src/main.js')
await main(process.argv.slice(2))
