/**
 * The state of a deployment that spans sites: each site's config server is read as one alone is
 * (its SQLite state in `.nodeset/<deployment>/<site>/configserver/`, or its URL), and each node's
 * states are taken from its own site's server, the one it reports to.
 */
import type {DeploymentStatus} from '../configserver/protocol.js'
import type {Reading, StateSource} from './state.js'

export class SitesStateSource implements StateSource {
  readonly where: string

  constructor(
    /** Each site's source, by site name. */
    private readonly sources: ReadonlyMap<string, StateSource>,
    /** The site each planned node runs in. */
    private readonly siteOf: (node: string) => string | undefined,
  ) {
    this.where = [...sources].map(([site, source]) => `${site}: ${source.where}`).join('; ')
  }

  async read(now: number): Promise<Reading> {
    const readings = new Map<string, Reading>()
    for (const [site, source] of this.sources) readings.set(site, await source.read(now))
    const own = (node: string) => readings.get(this.siteOf(node) ?? '')
    return {
      status: mergeStatuses(readings, this.siteOf),
      facts: (node) => own(node)?.facts(node),
      secrets: [...readings.values()].flatMap((r) => r.secrets),
    }
  }

  async close(): Promise<void> {
    for (const source of this.sources.values()) await source.close()
  }
}

/** One status from the sites': each instance from its own site; failed if one failed, settled if all are. */
export function mergeStatuses(
  readings: ReadonlyMap<string, Pick<Reading, 'status'>>,
  siteOf: (node: string) => string | undefined,
): DeploymentStatus | undefined {
  const statuses = [...readings].filter(([, r]) => r.status).map(([site, r]) => [site, r.status!] as const)
  if (statuses.length === 0) return undefined
  const instances = statuses.flatMap(([site, s]) => s.instances.filter((i) => siteOf(i.id) === site))
  const failed = statuses.filter(([, s]) => s.state === 'failed')
  const settled = statuses.length === readings.size && statuses.every(([, s]) => s.state === 'settled')
  const first = statuses[0][1]
  return {
    deployment: first.deployment,
    state: failed.length > 0 ? 'failed' : settled ? 'settled' : 'pending',
    ...(failed.length > 0
      ? {reason: failed.map(([site, s]) => `site ${site}: ${s.reason ?? 'failed'}`).join('; ')}
      : {}),
    registeredAt: first.registeredAt,
    ...(first.deadline === undefined ? {} : {deadline: first.deadline}),
    instances,
  }
}
