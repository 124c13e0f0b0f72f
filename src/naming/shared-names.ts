// One string per distinct name (namespace, group, service, cluster) among the instances that
// carry it. Every node holds every ephemeral instance, each with its four names, and a name read
// from a request or from a peer's sync message is a new string each time: as many copies of a
// service's name as it has instances, each copied by the young-generation collections it lives
// through and then kept. Sharing changes no value, only which of equal strings an instance holds.

/**
 * Distinct names remembered. Past it the table starts over (a registry with more names than this
 * keeps some copies, as before); a name is at most LIMITS.maxNameBytes, so this bounds its memory.
 */
export const MAX_SHARED_NAMES = 4096

const shared = new Map<string, string>()

/** The string equal to `name` that instances hold already, or `name`, which they share from now on. */
export function sharedName(name: string): string {
  const held = shared.get(name)
  if (held !== undefined) return held
  if (shared.size >= MAX_SHARED_NAMES) shared.clear()
  shared.set(name, name)
  return name
}
