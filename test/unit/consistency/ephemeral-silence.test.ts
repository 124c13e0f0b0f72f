// The wire form of an owner's question before a removal (consistency/ephemeral-silence.ts): a
// list of client ids, answered with the silence of each one the answering node holds a lease
// for. What arrives is checked: anything else is refused whole with INVALID_ARGUMENT.

import t from 'tap'
import { GraceError } from '../../../src/core/errors.js'
import {
  MAX_SILENCE_CLIENTS,
  askSilence,
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

t.test('askSilence: the least silence any member reports; a member that must answer and does not fails the question, one that need not is heard as silent', async (t) => {
  const answers: Record<string, () => Promise<Uint8Array>> = {
    up: async () => encodeSilenceAnswer(new Map([['c1', 9_000], ['c2', 100]])),
    healing: async () => encodeSilenceAnswer(new Map([['c1', 2_000]])),
    old: async () => Promise.reject(Object.assign(new Error('no such method'), { remoteCode: 'NOT_FOUND' })),
    down: async () => Promise.reject(new Error('unreachable')),
  }
  const asked: string[] = []
  const call = (to: string, method: string) => {
    asked.push(`${to} ${method}`)
    return answers[to]!()
  }
  const heard = await askSilence(call, [{ id: 'up', mustAnswer: true }, { id: 'healing', mustAnswer: false }, { id: 'old', mustAnswer: true }, { id: 'down', mustAnswer: false }], ['c1', 'c2', 'c3'])
  t.same([...heard].sort(), [['c1', 2_000], ['c2', 100]], 'per client, the least silence, from members seen UP or not')
  t.same(asked.sort(), ['down naming.silence', 'healing naming.silence', 'old naming.silence', 'up naming.silence'], 'every member is asked')
  await t.rejects(askSilence(call, [{ id: 'up', mustAnswer: true }, { id: 'down', mustAnswer: true }], ['c1']), /unreachable/, 'a member seen UP that does not answer fails the question')
})
