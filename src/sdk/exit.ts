// Deregistration on SIGTERM and SIGINT. One pair of handlers for every client of the process:
// on the signal, every client that asked runs its cleanup (deregistration), bounded by a
// deadline; then, if nothing else in the process listens to that signal, the signal is raised
// again with the default action (the process exits as it would have without us). A process with
// its own handlers keeps control of when it exits, and should await client.close() in them.

const cleanups = new Set<() => Promise<void>>()
let installed = false
const DEADLINE_MS = 6000

function onSignal(signal: NodeJS.Signals): void {
  uninstall()
  const all = [...cleanups]
  cleanups.clear()
  const deadline = new Promise<void>((r) => setTimeout(r, DEADLINE_MS).unref())
  void Promise.race([Promise.allSettled(all.map((c) => c())), deadline]).then(() => {
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  })
}

function uninstall(): void {
  if (!installed) return
  installed = false
  process.off('SIGTERM', onSignal)
  process.off('SIGINT', onSignal)
}

/** Runs cleanup on SIGTERM or SIGINT; the returned function cancels that. */
export function untilExit(cleanup: () => Promise<void>): () => void {
  cleanups.add(cleanup)
  if (!installed) {
    installed = true
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  }
  return () => {
    cleanups.delete(cleanup)
    if (cleanups.size === 0) uninstall()
  }
}
