/**
 * A deployment with sites has one config server per site. `SitesClient` asks them as one: a
 * registration goes to every site (each with its own keys, and the inputs of its own instances only),
 * a node's report to its own site's server, and status and state are each instance as its owner sees
 * it, with every site's link to the others. A file without sites never comes here.
 */
import type {
  DeploymentPhase,
  DeploymentState,
  DeploymentStatus,
  FederationLinkStatus,
  FederationStatus,
  ServiceReport,
} from '../configserver/protocol.js'
import {siteRegistration, type FederationKeys, type Registration} from '../configserver/registration.js'
import type {Nodeset} from '../nodeset/types.js'
import {siteOf} from '../plan/sites.js'
import type {Plan} from '../plan/types.js'
import {SitesProvider, type Provider} from '../providers/index.js'
import {
  openConfigServer,
  type ConfigServerHandle,
  type DeploymentClient,
  type DeploymentServerHandle,
} from './connect.js'
import type {FederationKeyring, Workspace} from './workspace.js'

type Instance = DeploymentStatus['instances'][number]

/** A site's server's own report: instances with their site, and its `federation` block. */
export type SiteReport = DeploymentStatus

/** Per site: its server, its part's phase, its links, and the other sites' instances with how fresh their facts are. */
export interface SiteStatus {
  site: string
  configServer: string
  state: DeploymentPhase
  reason?: string
  links: FederationLinkStatus[]
  refused?: FederationStatus['refused']
  remote: Array<{id: string; site?: string; factsAgeMs?: number}>
}

/** The deployment's status across its sites: every instance as its owner reports it, then each site. */
export interface SitesStatus extends DeploymentStatus {
  instances: Instance[]
  sites: SiteStatus[]
}

export interface SiteServer {
  site: string
  handle: ConfigServerHandle
  keys: FederationKeys
}

export class SitesClient implements DeploymentClient {
  private readonly owner = new Map<string, string>()

  constructor(
    readonly servers: SiteServer[],
    plan: Plan,
  ) {
    for (const node of plan.nodes) if (node.site) this.owner.set(node.name, node.site)
  }

  private serverOf(node: string): SiteServer | undefined {
    return this.servers.find((s) => s.site === this.owner.get(node))
  }

  private ownedBy(site: string, id: string, reported?: string): boolean {
    return (reported ?? this.owner.get(id)) === site
  }

  /** Every site gets the whole deployment and its own keys; each issues the tokens of its own instances. */
  async register(body: Registration): ReturnType<DeploymentClient['register']> {
    const answers = await Promise.all(this.servers.map((s) => s.handle.client.register(siteRegistration(body, s.keys))))
    return {deployment: answers[0].deployment, tokens: Object.assign({}, ...answers.map((a) => a.tokens))}
  }

  reportService(id: string, service: string, report: ServiceReport): Promise<{state: string}> {
    const server = this.serverOf(id)
    if (!server) return Promise.reject(new Error(`node ${id} belongs to no site of this deployment`))
    return server.handle.client.reportService(id, service, report)
  }

  /** Forgotten where it is owned (its server tells the others); a node of no site, everywhere it is known. */
  async forgetInstance(id: string): Promise<void> {
    const owner = this.serverOf(id)
    for (const server of owner ? [owner] : this.servers)
      await server.handle.client.forgetInstance(id).catch((error: {status?: number}) => {
        if (error.status !== 404) throw error
      })
  }

  async deleteDeployment(): Promise<void> {
    for (const server of this.servers) await server.handle.client.deleteDeployment()
  }

  async state(): Promise<DeploymentState> {
    const states = await Promise.all(this.servers.map((s) => s.handle.client.state()))
    const instances = states.flatMap((state, i) =>
      state.instances.filter((inst) => this.ownedBy(this.servers[i].site, inst.id, (inst as {site?: string}).site)),
    )
    return {deployment: states[0].deployment, instances}
  }

  async status(): Promise<SitesStatus> {
    const reports = await Promise.all(this.servers.map((s) => s.handle.client.status()))
    return combineStatus(
      this.servers.map((s, i) => ({site: s.site, configServer: s.handle.nodeUrl, report: reports[i]})),
      (id) => this.owner.get(id),
    )
  }
}

/** The sites' reports as one: settled only when every site's part is, failed when any site's is. Pure. */
export function combineStatus(
  sites: Array<{site: string; configServer: string; report: SiteReport}>,
  ownerOf: (id: string) => string | undefined,
): SitesStatus {
  const owned = (site: string, i: Instance) => (i.site ?? ownerOf(i.id)) === site
  const instances = sites.flatMap(({site, report}) =>
    report.instances.filter((i) => owned(site, i)).map((i) => ({...i, site})),
  )
  const failed = sites.find((s) => s.report.state === 'failed')
  const state: DeploymentPhase = failed
    ? 'failed'
    : sites.every((s) => s.report.state === 'settled')
      ? 'settled'
      : 'pending'
  const first = sites[0].report
  const deadlines = sites.map((s) => s.report.deadline).filter((d): d is string => d !== undefined)
  return {
    deployment: first.deployment,
    state,
    ...(failed ? {reason: `site ${failed.site}: ${failed.report.reason ?? 'failed'}`} : {}),
    registeredAt: sites.map((s) => s.report.registeredAt).sort()[0],
    ...(deadlines.length ? {deadline: deadlines.sort()[deadlines.length - 1]} : {}),
    instances,
    sites: sites.map(({site, configServer, report}) => ({
      site,
      configServer,
      state: report.state,
      ...(report.reason ? {reason: report.reason} : {}),
      links: report.federation?.links ?? [],
      ...(report.federation ? {refused: report.federation.refused} : {}),
      remote: report.instances
        .filter((i) => !owned(site, i))
        .map((i) => ({id: i.id, site: i.site ?? ownerOf(i.id), factsAgeMs: i.factsAgeMs})),
    })),
  }
}

/**
 * Open one config server per site (each where its own site's nodes reach the operator, with its name
 * and broker) and the handle that asks them as one. The federation keys are made on first use; they,
 * like the admin tokens, join `secrets`.
 */
export async function openSiteServers(
  nodeset: Nodeset,
  plan: Plan,
  workspace: Workspace,
  provider: Provider,
  secrets: string[],
): Promise<DeploymentServerHandle> {
  if (!(provider instanceof SitesProvider)) throw new Error('a deployment with sites needs a provider per site')
  const sites = plan.sites ?? []
  const ring = workspace.federationKeys(sites.map((s) => s.name))
  secrets.push(ring.sealKey, ...Object.values(ring.sites).map((pair) => pair.privateKey))
  const addresses = await provider.prepareSites()
  const servers: SiteServer[] = []
  try {
    for (const site of sites) {
      const {name, configServer, broker} = site
      const handle = await openConfigServer(nodeset, workspace, addresses.get(name), {name, configServer, broker})
      secrets.push(handle.adminToken)
      servers.push({site: name, handle, keys: keysOf(ring, name)})
    }
  } catch (error) {
    for (const s of servers) await s.handle.close().catch(() => undefined)
    throw error
  }
  const client = new SitesClient(servers, plan)
  const urlOf = (node: string) => (servers.find((s) => s.site === siteOf(plan, node)) ?? servers[0]).handle.nodeUrl
  return {
    client,
    nodeUrl: servers[0].handle.nodeUrl,
    nodeUrlOf: urlOf,
    adminToken: servers[0].handle.adminToken,
    embedded: servers.some((s) => s.handle.embedded),
    close: async () => {
      for (const s of servers) await s.handle.close()
    },
  }
}

function keysOf(ring: FederationKeyring, site: string): FederationKeys {
  const peers = Object.fromEntries(
    Object.entries(ring.sites)
      .filter(([name]) => name !== site)
      .map(([name, pair]) => [name, pair.publicKey]),
  )
  return {site, signingKey: ring.sites[site].privateKey, peers, sealKey: ring.sealKey}
}
