// The SDK's logging surface: pino, console-like objects and the server's Logger all fit.

export interface SdkLogger {
  info(obj: object | string, msg?: string): void
  warn(obj: object | string, msg?: string): void
  error(obj: object | string, msg?: string): void
}

/** The default: warnings and errors to stderr, one line each, info dropped. */
export const stderrLogger: SdkLogger = {
  info() {},
  warn(obj, msg) {
    process.stderr.write(`grace-sdk WARN ${line(obj, msg)}\n`)
  },
  error(obj, msg) {
    process.stderr.write(`grace-sdk ERROR ${line(obj, msg)}\n`)
  },
}

export const silentSdkLogger: SdkLogger = { info() {}, warn() {}, error() {} }

function line(obj: object | string, msg?: string): string {
  if (typeof obj === 'string') return obj
  return `${msg ?? ''} ${JSON.stringify(obj)}`.trim()
}
