// The server's V8 tuning (src/v8-tuning.ts). What the nextTick pin is for is checked in a child
// process with V8's natives syntax: process.nextTick's feedback after major GCs that ran while
// no tick object was alive, as happens to an idle server.

import t from 'tap'
import { pinTickObjectShape } from '../../src/v8-tuning.js'
import { runWithNatives } from '../helpers/natives.js'

const MODULE = new URL('../../src/v8-tuning.js', import.meta.url).href

/** The states of process.nextTick's literal-property feedback slots after idle GCs in a fresh node. */
function tickFeedbackAfterIdleGcs(pin: boolean): string[] {
  const script = `
    const { pinTickObjectShape } = await import(${JSON.stringify(MODULE)})
    if (${pin}) pinTickObjectShape()
    const ticks = () => new Promise((done) => { let n = 0; const next = () => (++n < 2000 ? process.nextTick(next) : done()); next() })
    await ticks()
    // One tick between GCs keeps nextTick's code in use (V8 drops the bytecode, and the feedback
    // with it, of functions unused across GCs); none is alive during a GC.
    for (let i = 0; i < 12; i++) { process.nextTick(() => {}); await new Promise((r) => setTimeout(r, 5)); globalThis.gc() }
    await ticks()
    new Function('f', '%DebugPrint(f)')(process.nextTick)
  `
  const printed = runWithNatives(script, ['--expose-gc'])
  return [...printed.matchAll(/slot #\d+ DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1]!)
}

t.test('a tick object is caught and kept', async (t) => {
  t.equal(pinTickObjectShape(), true)
  t.equal(pinTickObjectShape(), true, 'a second call keeps the first object')
  let ran = false
  await new Promise<void>((resolve) => process.nextTick(() => resolve(void (ran = true))))
  t.ok(ran, 'nextTick still works once the hook is off')
})

t.test('without the pin, idle GCs leave nextTick on the slow path; with it, on the fast one', async (t) => {
  const unpinned = tickFeedbackAfterIdleGcs(false)
  const pinned = tickFeedbackAfterIdleGcs(true)
  t.equal(unpinned.length, 4, 'the four properties of a tick object (two symbols, callback, args)')
  t.ok(unpinned.includes('MEGAMORPHIC'), `without the pin a slot turned megamorphic: ${unpinned.join(', ')}`)
  t.same(pinned, ['MONOMORPHIC', 'MONOMORPHIC', 'MONOMORPHIC', 'MONOMORPHIC'])
})
