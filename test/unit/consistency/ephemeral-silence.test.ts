// The wire form of an owner's question before a removal (consistency/ephemeral-silence.ts): a
// list of client ids, answered with the silence of each one the answering node holds a lease
// for. What arrives is checked: anything else is refused whole with INVALID_ARGUMENT.

import t from 'tap'
import { GraceError } from '../../../src/core/errors.js'
import {
  MAX_SILENCE_CLIENTS,
  decodeSilenceAnswer,
  decodeSilenceQuestion,
  encodeSilenceAnswer,
  encodeSilenceQuestion,
} from '../../../src/consistency/ephemeral-silence.js'

const bytes = (text: string) => Buffer.from(text, 'utf8')
const refused = (fn: () => unknown) => {
  try {
    fn()
  } catch (err) {
    return err instanceof GraceError && err.code === 'INVALID_ARGUMENT'
  }
  return false
}

t.test('a question and its answer go through as they were sent; the answer keeps only the clients asked about', async (t) => {
  const ids = ['10.0.0.1:8080', 'client-ü']
  t.same(decodeSilenceQuestion(encodeSilenceQuestion(ids)), ids)
  const answer = encodeSilenceAnswer(new Map([['client-ü', 1500], ['other', 3]]))
  t.same([...decodeSilenceAnswer(answer, ids)], [['client-ü', 1500]])
  t.same([...decodeSilenceAnswer(encodeSilenceAnswer(new Map()), ids)], [])
})

t.test('a malformed question or answer is refused whole', async (t) => {
  t.ok(refused(() => decodeSilenceQuestion(bytes('not json'))), 'not JSON')
  t.ok(refused(() => decodeSilenceQuestion(bytes('{"a":1}'))), 'not a list')
  t.ok(refused(() => decodeSilenceQuestion(bytes('["a", 3]'))), 'an id that is not a string')
  t.ok(refused(() => decodeSilenceQuestion(bytes('[""]'))), 'an empty id')
  t.ok(refused(() => decodeSilenceQuestion(bytes(JSON.stringify(['x'.repeat(513)])))), 'an id over 512 bytes')
  t.ok(refused(() => decodeSilenceQuestion(encodeSilenceQuestion(Array.from({ length: MAX_SILENCE_CLIENTS + 1 }, (_, i) => `c${i}`)))), 'too many ids')
  t.notOk(refused(() => decodeSilenceQuestion(encodeSilenceQuestion(Array.from({ length: MAX_SILENCE_CLIENTS }, (_, i) => `c${i}`)))), 'as many as a sweep chunk')
  t.ok(refused(() => decodeSilenceAnswer(bytes('[1]'), ['a'])), 'an answer that is not an object')
  t.ok(refused(() => decodeSilenceAnswer(bytes('{"a":-1}'), ['a'])), 'a negative silence')
  t.ok(refused(() => decodeSilenceAnswer(bytes('{"a":"5"}'), ['a'])), 'a silence that is not a number')
})
