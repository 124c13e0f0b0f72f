// Small command-line helpers the benchmarks share.

export function positive(name: string, value: string): number {
  const n = Number(value)
  if (!(n > 0)) fatal(`${name} must be a positive number of seconds, got ${value}`)
  return n
}

/** Progress goes to stderr so stdout holds only the tables. */
export function progress(line: string): void {
  process.stderr.write(line + '\n')
}

export function fatal(message: string): never {
  process.stderr.write(message + '\n')
  process.exit(2)
}
