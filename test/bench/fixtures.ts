// Bodies shared by the scenarios (what Grace is sent) and the roof server (what it answers), so
// the roof answers the query routes with about as many bytes as Grace does.

/** Instances pre-loaded into the queried service, and in the roof's constant answer. */
export const QUERY_INSTANCE_COUNT = 20
export const QUERY_SERVICE = 'bench-q'
export const CONFIG_GET_DATA_ID = 'bench-1'

/** About 200 bytes; the sequence number makes every publish a real change of content. */
export function configContent(seq: number): string {
  const head = `# bench config, revision ${seq}\n`
  return head + 'grace.bench.key=value;'.repeat(9).slice(0, 200 - head.length)
}

/** The i-th instance of the queried service, as registered and as the roof echoes it. */
export function queryInstance(i: number): { service: string; ip: string; port: number; ephemeral: boolean } {
  return { service: QUERY_SERVICE, ip: `10.1.0.${i + 1}`, port: 8080, ephemeral: true }
}

/** Shaped like Grace's InstanceList answer (proto/grace/v1/naming.proto) with every default filled. */
export function roofInstanceList(): object {
  const instances = Array.from({ length: QUERY_INSTANCE_COUNT }, (_, i) => ({
    namespace: 'public',
    group: 'DEFAULT_GROUP',
    cluster: 'DEFAULT',
    ...queryInstance(i),
    weight: 1,
    enabled: true,
    healthy: true,
    metadata: {},
    clientId: `10.1.0.${i + 1}:8080#DEFAULT`,
  }))
  return { namespace: 'public', group: 'DEFAULT_GROUP', service: QUERY_SERVICE, revision: 20, checksum: '0123456789abcdef0123456789abcdef', instances }
}

export function roofConfig(): object {
  return {
    namespace: 'public',
    group: 'DEFAULT_GROUP',
    dataId: CONFIG_GET_DATA_ID,
    content: configContent(1),
    type: 'text',
    md5: '0123456789abcdef0123456789abcdef',
    revision: 1,
    modifiedAt: 1_700_000_000_000,
  }
}
