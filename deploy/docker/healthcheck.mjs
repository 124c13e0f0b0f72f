#!/usr/bin/env node
// Container health probe: GET http://127.0.0.1:$GRACE_PORT<path> (path /healthz unless given)
// and exit 0 on a 2xx answer within 2 s, 1 otherwise. The image has no curl; this needs only
// node. Used by the Dockerfile's HEALTHCHECK (/healthz) and the compose file (/readyz).
const path = process.argv[2] ?? '/healthz'
const port = process.env.GRACE_PORT || '8848'
try {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) })
  process.exit(res.ok ? 0 : 1)
} catch {
  process.exit(1)
}
