/** What every node-time template sees besides the node itself: pure, from the nodeset. */
import type {Nodeset} from '../nodeset/types.js'

export interface LocationVar {
  url: string
  host: string
  path: string
  app: string
  /** The port the app listens on, on every appserver: the appserver's base port + its position. */
  port: number
}

export function appLocations(nodeset: Nodeset, basePort = 8080): LocationVar[] {
  const apps: string[] = []
  return nodeset.roles.flatMap((r) =>
    r.locations.map((l) => {
      if (!apps.includes(l.app)) apps.push(l.app)
      const url = new URL(l.url)
      return {
        url: l.url,
        host: url.hostname,
        path: url.pathname || '/',
        app: l.app,
        port: basePort + apps.indexOf(l.app),
      }
    }),
  )
}

export function setupVars(nodeset: Nodeset): Record<string, unknown> {
  const balancer = nodeset.roles.find((r) => r.role === 'balancer')
  const appserverPort = Number(nodeset.roles.find((r) => r.role === 'appserver')?.params.appserver?.port?.value ?? 8080)
  return {
    general: {name: nodeset.general.name, base_domain: nodeset.general.baseDomain ?? nodeset.general.name},
    hostnames: balancer?.hostnames ?? [],
    locations: appLocations(nodeset, appserverPort),
  }
}
