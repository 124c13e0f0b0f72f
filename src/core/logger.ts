// The logging surface the modules use; pino's logger satisfies it, and tests can pass silentLogger.

export interface Logger {
  info(obj: object | string, msg?: string): void
  warn(obj: object | string, msg?: string): void
  error(obj: object | string, msg?: string): void
}

export const silentLogger: Logger = {
  info() {},
  warn() {},
  error() {},
}
