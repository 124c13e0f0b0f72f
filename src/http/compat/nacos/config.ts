// Nacos 1.x config open API (/nacos/v1/cs/...) over Grace's config store. A Nacos tenant is a
// Grace namespace; the empty tenant is `public`.

import type { FastifyInstance } from 'fastify'
import { fail } from '../../../core/errors.js'
import { LIMITS } from '../../../core/limits.js'
import type { Fields } from '../../../core/validate.js'
import type { ConfigService } from '../../../config/service.js'
import type { HistoryEntry } from '../../../config/model.js'
import { CONFIG_BODY, params, required, sendJson, sendText, text, textInteger } from '../params.js'

/** The separators of the Listening-Configs parameter and of the listener's answer. */
const WORD = '\u0002'
const LINE = '\u0001'
/** Nacos answers a held listener this long before the client's own timeout. */
const ANSWER_BEFORE_CLIENT_TIMEOUT_MS = 500

function keyFields(f: Fields): Fields {
  return { namespace: text(f, 'tenant'), group: text(f, 'group'), dataId: required(f, 'dataId') }
}

interface ListenEntry {
  readonly dataId: string
  readonly group: string
  readonly md5: string
  /** As the client sent it: echoed in the answer only when it sent one. */
  readonly tenant: string | undefined
}

/** dataId WORD group WORD md5 [WORD tenant] LINE, repeated. */
export function parseListeningConfigs(value: string): ListenEntry[] {
  const out: ListenEntry[] = []
  for (const line of value.split(LINE)) {
    if (line === '') continue
    const words = line.split(WORD)
    if (words.length < 2 || words.length > 4) fail('INVALID_ARGUMENT', 'Listening-Configs is malformed: each entry is dataId, group, md5 and an optional tenant')
    out.push({ dataId: words[0]!, group: words[1]!, md5: words[2] ?? '', tenant: words[3] === '' ? undefined : words[3] })
  }
  if (out.length === 0) fail('INVALID_ARGUMENT', 'Listening-Configs names no config')
  return out
}

/** Nacos's history op types: I(nsert), U(pdate), D(elete). */
function opTypes(items: readonly HistoryEntry[], olderThanPage: HistoryEntry | undefined): string[] {
  return items.map((item, i) => {
    if (item.op === 'remove') return 'D'
    const older = i + 1 < items.length ? items[i + 1] : olderThanPage
    return older === undefined || older.op === 'remove' ? 'I' : 'U'
  })
}

export function registerNacosConfig(scope: FastifyInstance, config: ConfigService): void {
  scope.get('/v1/cs/configs', async (request, reply) => {
    const f = params(request)
    const key = keyFields(f)
    let found
    try {
      found = await config.get(key)
    } catch (err) {
      // Nacos's text for a missing config; its clients take any 404 as "no such config".
      if ((err as { code?: string }).code === 'CONFIG_NOT_FOUND') return sendText(reply, 404, 'config data not exist')
      throw err
    }
    if (text(f, 'show') === 'all') {
      return sendJson(reply, {
        id: String(found.revision),
        dataId: found.dataId,
        group: found.group,
        content: found.content,
        md5: found.md5,
        tenant: found.namespace === 'public' ? '' : found.namespace,
        type: found.type,
        createTime: found.modifiedAt,
        modifyTime: found.modifiedAt,
      })
    }
    reply.header('Config-Type', found.type)
    reply.header('Content-MD5', found.md5)
    reply.header('Last-Modified', new Date(found.modifiedAt).toUTCString())
    reply.header('Pragma', 'no-cache')
    reply.header('Cache-Control', 'no-cache,no-store')
    return sendText(reply, 200, found.content)
  })

  // appName, desc, tag, configTags, effect, schema, src_user: accepted and not stored.
  scope.post('/v1/cs/configs', CONFIG_BODY, async (request, reply) => {
    const f = params(request)
    await config.publish({ ...keyFields(f), content: required(f, 'content'), type: text(f, 'type'), casMd5: text(f, 'casMd5') })
    return sendJson(reply, true)
  })

  scope.delete('/v1/cs/configs', CONFIG_BODY, async (request, reply) => {
    const f = params(request)
    if (text(f, 'delType') !== undefined) fail('INVALID_ARGUMENT', 'delete by ids (delType=ids) is not supported; name the config with dataId and group')
    await config.remove(keyFields(f))
    return sendJson(reply, true)
  })

  scope.post('/v1/cs/configs/listener', CONFIG_BODY, async (request, reply) => {
    const f = params(request)
    const entries = parseListeningConfigs(required(f, 'Listening-Configs'))
    if (entries.length > LIMITS.maxListenItems) fail('INVALID_ARGUMENT', `Listening-Configs has ${entries.length} entries, over the limit of ${LIMITS.maxListenItems}`)
    const fallbackTenant = text(f, 'tenant')
    // Without Long-Pulling-Timeout the request is a probe, answered at once (as in Nacos).
    const header = request.headers['long-pulling-timeout']
    let timeoutMs = 0
    if (header !== undefined) {
      if (typeof header !== 'string' || !/^\d{1,9}$/.test(header)) fail('INVALID_ARGUMENT', 'Long-Pulling-Timeout must be milliseconds')
      timeoutMs = Math.min(Math.max(0, Number(header) - ANSWER_BEFORE_CLIENT_TIMEOUT_MS), LIMITS.maxListenTimeoutMs)
    }
    if (request.headers['long-pulling-timeout-no-hangup'] === 'true') timeoutMs = 0
    const items = entries.map((e) => ({ namespace: e.tenant ?? fallbackTenant, group: e.group, dataId: e.dataId, md5: e.md5 }))
    const gone = new AbortController()
    const onClose = (): void => gone.abort()
    reply.raw.once('close', onClose)
    if (request.raw.socket?.destroyed) gone.abort()
    let changed
    try {
      changed = await config.listen({ items, timeoutMs }, gone.signal)
    } finally {
      reply.raw.off('close', onClose)
    }
    let body = ''
    for (const key of changed) {
      const entry = entries.find((e) => e.dataId === key.dataId && e.group === key.group && (e.tenant ?? fallbackTenant ?? 'public') === key.namespace)
      const tenant = entry?.tenant ?? (key.namespace === 'public' ? undefined : key.namespace)
      body += key.dataId + WORD + key.group + (tenant === undefined ? '' : WORD + tenant) + LINE
    }
    reply.header('Pragma', 'no-cache')
    reply.header('Cache-Control', 'no-cache,no-store')
    return sendText(reply, 200, encodeURIComponent(body))
  })

  scope.get('/v1/cs/history', async (request, reply) => {
    const f = params(request)
    const search = text(f, 'search') ?? 'accurate'
    if (search !== 'accurate') fail('INVALID_ARGUMENT', 'only search=accurate is supported')
    if (text(f, 'nid') !== undefined) fail('INVALID_ARGUMENT', 'history by nid is not supported; list a config\'s history with dataId and group')
    const pageNo = textInteger(f, 'pageNo', 1, 1_000_000, 1)
    const pageSize = textInteger(f, 'pageSize', 1, 500, 100)
    const key = keyFields(f)
    // One entry more than the page: the op type of the page's oldest entry depends on it.
    const page = await config.history({ ...key, pageNo: 1, pageSize: Math.min(pageNo * pageSize + 1, LIMITS.maxPageSize) })
    const all = page.items
    if (pageNo * pageSize + 1 > LIMITS.maxPageSize && page.count > LIMITS.maxPageSize) fail('INVALID_ARGUMENT', `pageNo × pageSize must stay under ${LIMITS.maxPageSize}`)
    const items = all.slice((pageNo - 1) * pageSize, pageNo * pageSize)
    const ops = opTypes(items, all[pageNo * pageSize])
    const namespace = (key.namespace as string | undefined) ?? 'public'
    return sendJson(reply, {
      totalCount: page.count,
      pageNumber: pageNo,
      pagesAvailable: Math.ceil(page.count / pageSize),
      pageItems: items.map((item, i) => ({
        id: String(item.id),
        lastId: -1,
        dataId: key.dataId,
        group: (key.group as string | undefined) ?? 'DEFAULT_GROUP',
        tenant: namespace === 'public' ? '' : namespace,
        appName: '',
        md5: item.md5,
        content: item.content,
        srcIp: '',
        srcUser: null,
        opType: ops[i],
        createdTime: new Date(item.modifiedAt).toISOString(),
        lastModifiedTime: new Date(item.modifiedAt).toISOString(),
      })),
    })
  })
}
