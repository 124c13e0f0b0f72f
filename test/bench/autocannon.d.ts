// autocannon 9 ships no types. This declares only the part of its programmatic API the benchmark
// uses (README "API" and "Results"), so a wrong option name is a compile error rather than a
// silently ignored setting.

declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  namespace autocannon {
    /** The raw request autocannon is about to serialise; setupRequest may return a changed copy. */
    interface RequestParams {
      method?: string
      path?: string
      headers?: Record<string, string>
      body?: string | Buffer
    }

    interface Request extends RequestParams {
      /** Called before every request of this kind; a falsy return restarts the sequence. */
      setupRequest?: (request: RequestParams, context: Record<string, unknown>) => RequestParams | null | undefined
    }

    interface Options extends RequestParams {
      /** Several URLs: connection i goes to url[i % url.length]. */
      url: string | string[]
      /** Stop after this many responses in all (instead of after `duration`). */
      amount?: number
      connections?: number
      pipelining?: number
      /** Seconds. */
      duration?: number
      /** Seconds before a request counts as a timeout (and an error). */
      timeout?: number
      requests?: Request[]
      title?: string
    }

    /** hdr-histogram-percentiles-obj shape. */
    interface Histogram {
      average: number
      mean: number
      stddev: number
      min: number
      max: number
      total: number
      p50: number
      p99: number
      [percentile: string]: number
    }

    interface Result {
      title?: string
      url: string
      /** Seconds, fractional. */
      duration: number
      connections: number
      pipelining: number
      errors: number
      timeouts: number
      mismatches: number
      non2xx: number
      resets: number
      statusCodeStats: Record<string, { count: number }>
      /** Milliseconds, recorded as integers: too coarse for sub-millisecond latencies. */
      latency: Histogram
      /** Per-second samples; `total` is every completed response. */
      requests: Histogram & { sent: number }
      /** Bytes per second samples; `total` is every response byte. */
      throughput: Histogram
    }

    interface Instance extends EventEmitter {
      stop(): void
      on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): this
      on(event: 'reqError', listener: (error: Error) => void): this
      on(event: string, listener: (...args: unknown[]) => void): this
    }
  }

  function autocannon(options: autocannon.Options, callback: (err: Error | null, result: autocannon.Result) => void): autocannon.Instance

  export default autocannon
}
