// Shared names (naming/shared-names.ts): equal names come back as the string first seen, and the
// table stays bounded. Which of two equal strings comes back JavaScript cannot tell;
// test/unit/ap/node/held-shapes.test.ts checks that instances hold one string per name.

import t from 'tap'
import { MAX_SHARED_NAMES, sharedName } from '../../../src/naming/shared-names.js'

t.test('a name comes back equal, past the bound of distinct names too', async (t) => {
  const first = ['svc', 'a'].join('-')
  t.equal(sharedName(first), 'svc-a')
  t.equal(sharedName(['svc', 'a'].join('-')), 'svc-a')
  let wrong = 0
  for (let i = 0; i < 2 * MAX_SHARED_NAMES + 3; i++) if (sharedName(`n${i}`) !== `n${i}`) wrong++
  t.equal(wrong, 0, 'twice as many distinct names as the table holds')
  t.equal(sharedName('svc-a'), 'svc-a', 'after the table started over')
})
