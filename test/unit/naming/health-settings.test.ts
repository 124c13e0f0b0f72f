// The health settings: defaults, flags over the environment over the config file (src/settings.ts),
// and a clear error for every bad value (main.ts then exits with 2 and the usage).

import t from 'tap'
import { HEALTH_DEFAULTS, readHealthSettings } from '../../../src/naming/health-settings.js'
import { type ServerSettings, type SettingsFiles, readSettings } from '../../../src/settings.js'

const noFiles: SettingsFiles = {
  read: () => {
    throw new Error('no file')
  },
  mode: () => 0o600,
}

function health(argv: string[], env: Record<string, string> = {}, files = noFiles) {
  return (readSettings(argv, env, files) as ServerSettings).health
}

t.test('defaults, config file, environment, flags', async (t) => {
  t.same(readHealthSettings({}), HEALTH_DEFAULTS)
  t.same(HEALTH_DEFAULTS, { probeConcurrency: 64, selfPreservation: { share: 0.5, windowMs: 60_000, minClients: 10 } })
  t.same(health([]), HEALTH_DEFAULTS)
  const file: SettingsFiles = {
    read: () => JSON.stringify({ 'probe-concurrency': 32, 'self-preservation-share': 0.25, 'self-preservation-window-ms': 20000, 'self-preservation-min-clients': 5 }),
    mode: () => 0o600,
  }
  t.same(health(['--config', 'grace.json'], {}, file), { probeConcurrency: 32, selfPreservation: { share: 0.25, windowMs: 20_000, minClients: 5 } }, 'from the file')
  const env = { GRACE_PROBE_CONCURRENCY: '16', GRACE_SELF_PRESERVATION_SHARE: '0.3', GRACE_SELF_PRESERVATION_WINDOW_MS: '30000', GRACE_SELF_PRESERVATION_MIN_CLIENTS: '50' }
  t.same(health(['--config', 'grace.json'], env, file), { probeConcurrency: 16, selfPreservation: { share: 0.3, windowMs: 30_000, minClients: 50 } }, 'the environment over the file')
  t.same(health(['--probe-concurrency', '8', '--self-preservation-share', '1'], env), { probeConcurrency: 8, selfPreservation: { share: 1, windowMs: 30_000, minClients: 50 } }, 'flags win')
})

t.test('bad values are refused with the flag named', async (t) => {
  const bad: [string[], RegExp][] = [
    [['--probe-concurrency', '0'], /--probe-concurrency must be a whole number in 1\.\.1024/],
    [['--probe-concurrency', '1025'], /--probe-concurrency/],
    [['--probe-concurrency', '8.5'], /--probe-concurrency/],
    [['--self-preservation-share', '0'], /--self-preservation-share must be a number in \(0, 1\]/],
    [['--self-preservation-share', '1.5'], /--self-preservation-share/],
    [['--self-preservation-share', 'half'], /--self-preservation-share/],
    [['--self-preservation-window-ms', '999'], /--self-preservation-window-ms must be a whole number in 1000\.\.3600000/],
    [['--self-preservation-min-clients', '0'], /--self-preservation-min-clients/],
  ]
  for (const [argv, message] of bad) t.throws(() => health(argv), message, argv.join(' '))
  t.throws(() => health([], { GRACE_SELF_PRESERVATION_SHARE: '-1' }), /share/, 'from the environment too')
  const file: SettingsFiles = { read: () => JSON.stringify({ 'self-preservation-share': '0.5' }), mode: () => 0o600 }
  t.throws(() => health(['--config', 'grace.json'], {}, file), /"self-preservation-share" must be a number/, 'a file value of the wrong type')
})
