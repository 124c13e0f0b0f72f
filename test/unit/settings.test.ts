// Server settings (src/settings.ts): flags over environment over config file over defaults; the
// config file is checked strictly (unknown keys, wrong types, bad JSON are errors naming the key);
// the member heartbeat period; the client address published to members and clients.

import t from 'tap'
import { clientAddressFor, readConfigFile, readSettings, type ServerSettings, type SettingsFiles } from '../../src/settings.js'

const SECRET = 'a-secret-of-enough-length'

function files(contents: Record<string, string>, mode = 0o100600): SettingsFiles {
  return {
    read(path) {
      const text = contents[path]
      if (text === undefined) throw new Error(`ENOENT: no such file, open '${path}'`)
      return text
    },
    mode: () => mode,
  }
}

function settings(argv: string[], env: Record<string, string> = {}, fs: SettingsFiles = files({})): ServerSettings {
  const s = readSettings(argv, env, fs)
  if (s === 'help') throw new Error('help')
  return s
}

t.test('defaults: a standalone node on 127.0.0.1:8848, heartbeats every 5 s', async (t) => {
  const s = settings([])
  t.match(s, { host: '127.0.0.1', port: 8848, nodeId: 'n1', join: false, memberHeartbeatMs: 5000, snapshotEvery: 10000, clientAddress: undefined, configFile: undefined })
  t.equal(s.members.size, 0)
  t.equal(readSettings(['--help'], {}, files({})), 'help')
})

t.test('a config file gives every setting; the environment overrides it, and flags override both', async (t) => {
  const file = JSON.stringify({
    host: '10.0.0.1',
    port: 9000,
    'node-id': 'n2',
    members: { n1: '10.0.0.1:9848', n2: '10.0.0.2:9848', n3: '10.0.0.3:9848' },
    'cluster-secret': SECRET,
    'member-heartbeat-ms': 2000,
    'client-address': 'grace-2.example:9000',
    'data-dir': '/var/lib/grace',
    'log-level': 'warn',
    join: false,
    'snapshot-every': 100,
    'snapshot-retain': 50,
  })
  const fs = files({ '/etc/grace.json': file })
  const fromFile = settings(['--config', '/etc/grace.json'], {}, fs)
  t.match(fromFile, { host: '10.0.0.1', port: 9000, nodeId: 'n2', clusterSecret: SECRET, memberHeartbeatMs: 2000, clientAddress: 'grace-2.example:9000', dataDir: '/var/lib/grace', logLevel: 'warn', snapshotEvery: 100, snapshotRetain: 50 })
  t.same([...fromFile.members], [['n1', '10.0.0.1:9848'], ['n2', '10.0.0.2:9848'], ['n3', '10.0.0.3:9848']])
  t.same(fromFile.configFile, { path: '/etc/grace.json', readableByOthers: false })

  const env = { GRACE_CONFIG: '/etc/grace.json', GRACE_PORT: '9100', GRACE_MEMBER_HEARTBEAT_MS: '3000', GRACE_LOG_LEVEL: '' }
  const fromEnv = settings([], env, fs)
  t.equal(fromEnv.port, 9100, 'the environment over the file')
  t.equal(fromEnv.memberHeartbeatMs, 3000)
  t.equal(fromEnv.logLevel, 'warn', 'an empty variable counts as unset')
  t.equal(fromEnv.nodeId, 'n2', 'the file where neither says')

  const fromFlags = settings(['--port', '9200', '--member-heartbeat-ms', '1000'], env, fs)
  t.equal(fromFlags.port, 9200, 'flags over everything')
  t.equal(fromFlags.memberHeartbeatMs, 1000)

  t.equal(settings(['--config', '/etc/grace.json', '--join'], {}, files({ '/etc/grace.json': JSON.stringify({ ...JSON.parse(file), join: false }) })).join, true)
  t.equal(settings([], { GRACE_JOIN: 'true', GRACE_CONFIG: '/g.json' }, files({ '/g.json': file })).join, true)
  t.equal(settings(['--config', '/g.json'], {}, files({ '/g.json': JSON.stringify({ ...JSON.parse(file), join: true }) })).join, true)
})

t.test('members in a file may also be the flag\'s string form', async (t) => {
  const fs = files({ '/g.json': JSON.stringify({ 'node-id': 'a', members: 'a=127.0.0.1:1,b=127.0.0.1:2', 'cluster-secret': SECRET }) })
  t.same([...settings(['--config', '/g.json'], {}, fs).members.keys()], ['a', 'b'])
})

t.test('a config file readable by others is reported (it may hold the secret)', async (t) => {
  const fs = files({ '/g.json': '{}' }, 0o100644)
  t.same(settings(['--config', '/g.json'], {}, fs).configFile, { path: '/g.json', readableByOthers: true })
})

t.test('a bad config file stops the server with a message naming the file and the key', async (t) => {
  const cases: [string, string | undefined, RegExp][] = [
    ['missing', undefined, /config file \/g\.json: cannot read it: ENOENT/],
    ['bad JSON', '{"port": 1,}', /config file \/g\.json: not valid JSON/],
    ['an array', '[]', /must be a JSON object of settings/],
    ['an unknown key', '{"prot": 8848}', /unknown setting "prot"; the settings are host, port,/],
    ['a flag with dashes', '{"--port": 8848}', /unknown setting "--port"/],
    ['config inside config', '{"config": "/other.json"}', /unknown setting "config"/],
    ['a port as a string', '{"port": "8848"}', /"port" must be a whole number, not "8848"/],
    ['a fractional heartbeat', '{"member-heartbeat-ms": 1.5}', /"member-heartbeat-ms" must be a whole number/],
    ['join as a string', '{"join": "true"}', /"join" must be true or false/],
    ['host as a number', '{"host": 1}', /"host" must be a string/],
    ['members as a list', '{"members": ["a=127.0.0.1:1"]}', /"members" must be "id=host:port,\.\.\." or an object/],
    ['a member address that is a number', '{"members": {"a": 1}}', /a is not a string/],
    ['no members', '{"members": {}}', /non-empty map/],
  ]
  for (const [what, text, message] of cases) {
    const fs = files(text === undefined ? {} : { '/g.json': text })
    t.throws(() => readSettings(['--config', '/g.json'], {}, fs), { message }, what)
  }
  // The values themselves are checked as if they came from flags.
  t.same(readConfigFile('/g.json', files({ '/g.json': '{"port": 70000}' })), { port: '70000' }, 'the file is read as flags would be given')
  t.throws(() => settings(['--config', '/g.json'], {}, files({ '/g.json': '{"port": 70000}' })), /invalid port/)
  t.throws(() => settings(['--config', '/g.json'], {}, files({ '/g.json': '{"members": {"a": "nowhere"}, "node-id": "a"}' })), /invalid member "a=nowhere"/)
  t.throws(() => settings(['--config', '/g.json'], {}, files({ '/g.json': '{"members": {"a": "h:1", "b": "h:2"}, "node-id": "a"}' })), /a cluster needs --cluster-secret/)
})

t.test('flags and environment values are checked', async (t) => {
  t.throws(() => settings(['--member-heartbeat-ms', '50']), /--member-heartbeat-ms must be a whole number in 100\.\.60000/)
  t.throws(() => settings(['--member-heartbeat-ms', '5s']), /--member-heartbeat-ms/)
  t.throws(() => settings([], { GRACE_MEMBER_HEARTBEAT_MS: '600000' }), /--member-heartbeat-ms/)
  t.throws(() => settings(['--port', '80a']), /invalid port/)
  t.throws(() => settings(['--client-address', 'nowhere']), /invalid client address "nowhere"/)
  t.throws(() => settings([], { GRACE_JOIN: 'yes' }), /GRACE_JOIN must be true or false/)
  t.throws(() => settings(['--bogus']), /Unknown option '--bogus'/)
  t.throws(() => settings(['--members', 'n1=127.0.0.1:1,n2=127.0.0.1:2']), /a cluster needs --cluster-secret/, 'no default secret')
  t.throws(() => settings(['--members', 'n1=127.0.0.1:1,n2=127.0.0.1:2', '--cluster-secret', 'short']), /at least 16 characters/)
})

t.test('the client address: as set, else where it listens, else its peer host when it listens everywhere', async (t) => {
  const members = new Map([['n1', 'grace-0.grace-peer:9848']])
  t.equal(clientAddressFor({ clientAddress: 'lb.example:80', host: '0.0.0.0', members, nodeId: 'n1' }, 8848), 'lb.example:80')
  t.equal(clientAddressFor({ clientAddress: undefined, host: '10.0.0.5', members, nodeId: 'n1' }, 8848), '10.0.0.5:8848')
  t.equal(clientAddressFor({ clientAddress: undefined, host: '0.0.0.0', members, nodeId: 'n1' }, 8848), 'grace-0.grace-peer:8848')
  t.equal(clientAddressFor({ clientAddress: undefined, host: '::', members: new Map([['n1', '[fd00::1]:9848']]), nodeId: 'n1' }, 8848), '[fd00::1]:8848')
  t.equal(clientAddressFor({ clientAddress: undefined, host: '::1', members: new Map(), nodeId: 'n1' }, 9000), '[::1]:9000')
  t.equal(clientAddressFor({ clientAddress: undefined, host: '0.0.0.0', members: new Map(), nodeId: 'n1' }, 8848), '0.0.0.0:8848', 'standalone: nothing better to say')
})
