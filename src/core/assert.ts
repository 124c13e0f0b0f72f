// Invariant checks that stay on in production: a broken invariant is a bug, and carrying on
// with corrupt state is worse than stopping the request (or the process).

export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`)
    this.name = 'AssertionError'
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message)
}
