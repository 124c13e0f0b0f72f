// Request checks: each bad field is rejected with the right code and a message naming the field.

import t from 'tap'
import { LIMITS } from '../../../src/core/limits.js'
import { parseKey, parseListen, parseMd5, parsePublish, parseRemove } from '../../../src/config/requests.js'
import { throwsGrace } from '../../helpers/config-store.js'

const HEX = '0123456789abcdef0123456789abcdef'

t.test('a key defaults namespace and group, and requires dataId', async (t) => {
  t.same(parseKey({ dataId: 'd' }), { namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'd' })
  t.same(parseKey({ namespace: 'dev', group: 'g', dataId: 'd' }), { namespace: 'dev', group: 'g', dataId: 'd' })
  throwsGrace(t, () => parseKey({}), 'INVALID_NAME', /dataId is required/)
  throwsGrace(t, () => parseKey({ dataId: '' }), 'INVALID_NAME', /dataId is required/)
  throwsGrace(t, () => parseKey({ dataId: '   ' }), 'INVALID_NAME', /dataId must not start or end with white space/)
  throwsGrace(t, () => parseKey({ dataId: 'app.yaml ' }), 'INVALID_NAME', /white space/)
  throwsGrace(t, () => parseKey({ dataId: 7 }), 'INVALID_NAME', /dataId must be a string/)
  throwsGrace(t, () => parseKey({ dataId: ['a', 'b'] }), 'INVALID_NAME', /dataId must be a string/)
  throwsGrace(t, () => parseKey({ dataId: 'x'.repeat(LIMITS.maxNameBytes + 1) }), 'INVALID_NAME', /dataId is over 512 bytes/)
  t.equal(parseKey({ dataId: 'x'.repeat(LIMITS.maxNameBytes) }).dataId.length, LIMITS.maxNameBytes, 'exactly the limit is fine')
  throwsGrace(t, () => parseKey({ dataId: 'é'.repeat(257) }), 'INVALID_NAME', /over 512 bytes/)
  throwsGrace(t, () => parseKey({ dataId: 'a\u0000b' }), 'INVALID_NAME', /control character/)
  throwsGrace(t, () => parseKey({ group: 'g\tx', dataId: 'd' }), 'INVALID_NAME', /group has a control character/)
  throwsGrace(t, () => parseKey({ namespace: 'n\u007f', dataId: 'd' }), 'INVALID_NAME', /namespace/)
  throwsGrace(t, () => parseKey({ group: 'a@@b', dataId: 'd' }), 'INVALID_NAME', /group must not contain '@@'/)
  t.equal(parseKey({ dataId: 'a@@b' }).dataId, 'a@@b', "'@@' is only reserved in groups")
})

t.test('names and content must be well-formed UTF-16', async (t) => {
  t.equal(parseKey({ dataId: '😀' }).dataId, '😀', 'a surrogate pair is fine')
  throwsGrace(t, () => parseKey({ dataId: 'a\ud800' }), 'INVALID_NAME', /unpaired UTF-16 surrogate/)
  throwsGrace(t, () => parseKey({ group: '\udc00', dataId: 'd' }), 'INVALID_NAME', /group/)
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: 'x\udfff' }), 'INVALID_ARGUMENT', /content has an unpaired/)
})

t.test('publish: content is required, non-empty, a string, at most 1 MiB of UTF-8', async (t) => {
  t.same(parsePublish({ dataId: 'd', content: 'c' }), { namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'd', content: 'c', type: 'text' })
  throwsGrace(t, () => parsePublish({ dataId: 'd' }), 'INVALID_ARGUMENT', /content is required/)
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: '' }), 'INVALID_ARGUMENT', /content must not be empty/)
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: 5 }), 'INVALID_ARGUMENT', /content must be a string/)
  const max = 'x'.repeat(LIMITS.maxConfigContentBytes)
  t.equal(parsePublish({ dataId: 'd', content: max }).content.length, LIMITS.maxConfigContentBytes)
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: max + 'x' }), 'CONTENT_TOO_LARGE', /1048577 bytes/)
  // Counted in UTF-8 bytes, not characters: half as many 'é' already reach the limit.
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: 'é'.repeat(LIMITS.maxConfigContentBytes / 2 + 1) }), 'CONTENT_TOO_LARGE')
})

t.test('publish: type is optional short text', async (t) => {
  t.equal(parsePublish({ dataId: 'd', content: 'c', type: 'yaml' }).type, 'yaml')
  t.equal(parsePublish({ dataId: 'd', content: 'c', type: '' }).type, 'text')
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: 'c', type: 'y'.repeat(LIMITS.maxConfigTypeBytes + 1) }), 'INVALID_ARGUMENT', /type is over/)
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: 'c', type: 3 }), 'INVALID_ARGUMENT', /type must be a string/)
  throwsGrace(t, () => parsePublish({ dataId: 'd', content: 'c', type: 'a\nb' }), 'INVALID_ARGUMENT', /type has a control/)
})

t.test("md5s are '' or 32 hex digits, kept in lower case", async (t) => {
  t.equal(parseMd5(undefined, 'casMd5'), undefined)
  t.equal(parseMd5(null, 'casMd5'), undefined)
  t.equal(parseMd5('', 'casMd5'), '')
  t.equal(parseMd5(HEX.toUpperCase(), 'casMd5'), HEX)
  throwsGrace(t, () => parseMd5('abc', 'casMd5'), 'INVALID_ARGUMENT', /casMd5 must be '' or 32 hex digits/)
  throwsGrace(t, () => parseMd5(HEX.slice(1) + 'g', 'casMd5'), 'INVALID_ARGUMENT')
  throwsGrace(t, () => parseMd5(12, 'casMd5'), 'INVALID_ARGUMENT', /must be a string/)
  t.same(parsePublish({ dataId: 'd', content: 'c', casMd5: '' }).casMd5, '')
  t.notOk('casMd5' in parsePublish({ dataId: 'd', content: 'c' }), 'absent stays absent')
  t.same(parseRemove({ dataId: 'd', casMd5: HEX }), { namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'd', casMd5: HEX })
})

t.test('listen: items and timeout are checked', async (t) => {
  t.same(parseListen({ items: [{ dataId: 'd' }] }), {
    items: [{ namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'd', md5: '' }],
    timeoutMs: LIMITS.defaultListenTimeoutMs,
  })
  t.equal(parseListen({ items: [{ dataId: 'd', md5: HEX }], timeoutMs: 0 }).timeoutMs, 0)
  t.equal(parseListen({ items: [{ dataId: 'd' }], timeoutMs: LIMITS.maxListenTimeoutMs }).timeoutMs, LIMITS.maxListenTimeoutMs)
  throwsGrace(t, () => parseListen({}), 'INVALID_ARGUMENT', /items is required/)
  throwsGrace(t, () => parseListen({ items: {} }), 'INVALID_ARGUMENT', /items must be an array/)
  throwsGrace(t, () => parseListen({ items: [] }), 'INVALID_ARGUMENT', /items must not be empty/)
  throwsGrace(t, () => parseListen({ items: ['d'] }), 'INVALID_ARGUMENT', /items\[0\] must be an object/)
  throwsGrace(t, () => parseListen({ items: [{ dataId: 'a' }, { group: 'g' }] }), 'INVALID_NAME', /items\[1\]\.dataId is required/)
  throwsGrace(t, () => parseListen({ items: [{ dataId: 'a', md5: 'x' }] }), 'INVALID_ARGUMENT', /items\[0\]\.md5/)
  const many = Array.from({ length: LIMITS.maxListenItems + 1 }, (_, i) => ({ dataId: `d${i}` }))
  throwsGrace(t, () => parseListen({ items: many }), 'INVALID_ARGUMENT', /over the limit of 1000/)
  t.equal(parseListen({ items: many.slice(1) }).items.length, LIMITS.maxListenItems)
  throwsGrace(t, () => parseListen({ items: [{ dataId: 'd' }], timeoutMs: -1 }), 'INVALID_ARGUMENT', /timeoutMs/)
  throwsGrace(t, () => parseListen({ items: [{ dataId: 'd' }], timeoutMs: LIMITS.maxListenTimeoutMs + 1 }), 'INVALID_ARGUMENT', /timeoutMs/)
  throwsGrace(t, () => parseListen({ items: [{ dataId: 'd' }], timeoutMs: 1.5 }), 'INVALID_ARGUMENT', /timeoutMs/)
})
