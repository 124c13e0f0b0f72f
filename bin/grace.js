#!/usr/bin/env node
// The `grace` command: starts a standalone server. Build first (npm run build; npm ci does it).
import { tuneV8ForServer } from '../dist/src/v8-tuning.js'

// Before main.js loads, so that every function of the server starts with them (src/v8-tuning.ts).
tuneV8ForServer()

const { main } = await import('../dist/src/main.js')
await main(process.argv.slice(2))
