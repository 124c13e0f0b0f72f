#!/usr/bin/env node
// The `grace` command: starts a standalone server. Build first (npm run build; npm ci does it).
import { main } from '../dist/src/main.js'

await main(process.argv.slice(2))
