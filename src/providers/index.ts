/**
 * The providers behind one factory: the `[provider]` settings of a nodeset are parsed and checked
 * by the provider of that kind (every problem with its file:line), then that provider is built for
 * the deployment. Nothing outside src/providers/ needs to know which kind it has. Checking makes no
 * call and builds no client: `plan` runs the same checks as the commands that reach the provider.
 * With sites, one provider per site behind SitesProvider. (Over 300 lines: sites build their providers
 * from the same KINDS table, which this file keeps to itself.)
 */
import fs from 'node:fs'
import path from 'node:path'
import {DiagnosticsError} from '../core/diagnostics.js'
import {UserError} from '../core/errors.js'
import type {Nodeset, ProviderKind} from '../nodeset/types.js'
import type {Plan} from '../plan/types.js'
import type {HostKeyPolicy} from '../ssh/hostkeys.js'
import {Ec2Provider} from './ec2.js'
import {ec2OptionProblems} from './ec2-options.js'
import {DEFAULT_STATE_ROOT, LocalProvider} from './local.js'
import {bridgeName} from './local-network.js'
import type {Provider, ProviderContext} from './provider.js'
import {checkSites, SETTINGS, siteView} from './settings.js'
import {StaticProvider} from './static.js'

import type {NodeRecord, NodeRequest} from './provider.js'

export type {NodeRecord, NodeRequest, Provider, ProviderContext} from './provider.js'
export {checkProviderSettings, providerWarnings} from './settings.js'

/**
 * Parse and check the settings (throwing DiagnosticsError, settings.ts); what it returns builds the provider.
 * Without a plan, the checks that need the planned nodes are left out.
 */
type Kind = (nodeset: Nodeset, plan: Plan | undefined) => (ctx: ProviderContext, site?: string) => Provider

const KINDS: Record<ProviderKind, Kind> = {
  local: (nodeset) => {
    const settings = SETTINGS.local(nodeset)
    // The operator's key is made when a node first needs it, not by commands that only read.
    return (ctx, site) =>
      new LocalProvider({
        deployment: ctx.deployment,
        ...settings,
        ...(site ? localSiteScope(ctx.deployment, site, settings.bridge) : {}),
        authorizedKeys: () => [ctx.sshKey().publicKey],
        privateKeyPath: path.join(ctx.stateDir, 'id_ed25519'), // where ctx.sshKey() keeps it
        hostKeys: ctx.hostKeys,
      })
  },
  ec2: (nodeset) => {
    const {options, sshKey} = SETTINGS.ec2(nodeset)
    return (ctx) =>
      new Ec2Provider({
        ...options,
        ...awsFlags(ctx.aws),
        deployment: ctx.deployment,
        hostKeys: ctx.hostKeys,
        sshKey,
      })
  },
  // Servers that already exist, reached over SSH; host keys from known_hosts or pinned on first use.
  static: (nodeset, plan) => {
    const settings = SETTINGS.static(nodeset, plan)
    return (ctx) =>
      new StaticProvider({
        deployment: ctx.deployment,
        ...settings,
        stateDir: ctx.stateDir,
        hostKeys: ctx.hostKeys,
        trustOnFirstUse: ctx.trustOnFirstUse,
      })
  },
}

/**
 * Parse and check [provider] settings (DiagnosticsError with file:line on bad settings) and build the
 * provider. --profile/--region (ctx.aws) are refused, exit code 2, when malformed or when the provider
 * is not ec2.
 */
export function openProvider(nodeset: Nodeset, plan: Plan, ctx: ProviderContext): Provider {
  const flags = Object.entries(ctx.aws ?? {}).filter(([, v]) => v !== undefined)
  if (nodeset.sites?.length) {
    if (flags.length && !nodeset.sites.some((s) => s.provider.kind === 'ec2'))
      throw new UserError(
        `${flags.map(([k]) => `--${k}`).join(' and ')} only apply to ec2 sites; this nodeset has none`,
        2,
      )
    return openSites(nodeset, plan, ctx)
  }
  const build = KINDS[nodeset.provider.kind](nodeset, plan)
  if (flags.length && nodeset.provider.kind !== 'ec2')
    throw new UserError(
      `${flags.map(([k]) => `--${k}`).join(' and ')} only apply to provider ec2; this nodeset's provider is ${nodeset.provider.kind}`,
      2,
    )
  return build(ctx)
}

/** --profile and --region, checked like the keys they stand in for. */
function awsFlags(aws: ProviderContext['aws']): {profile?: string; region?: string} {
  const flags = {...(aws?.profile ? {profile: aws.profile} : {}), ...(aws?.region ? {region: aws.region} : {})}
  const problems = ec2OptionProblems({image: {kind: 'name', pattern: '*'}, ...flags})
  if (problems.length)
    throw new UserError(
      problems.map((p) => `--${p.setting}: ${p.message}${p.hint ? ` (${p.hint})` : ''}`).join('\n'),
      2,
    )
  return flags
}

/** A local site's own bridge (unless the file names one) and its own record of nodes. */
function localSiteScope(deployment: string, site: string, bridge: string | undefined) {
  return {
    bridge: bridge ?? bridgeName(`${deployment}@${site}`),
    stateRoot: path.join(path.dirname(DEFAULT_STATE_ROOT), 'local-sites', site),
  }
}

function openSites(nodeset: Nodeset, plan: Plan, ctx: ProviderContext): SitesProvider {
  const problems = checkSites(nodeset, plan)
  if (problems.length) throw new DiagnosticsError(problems)
  const sites = (nodeset.sites ?? []).map((site) => {
    const view = siteView(nodeset, site, plan)
    // A static site keeps what it records in a folder of its own; the operator's key stays the deployment's.
    const siteCtx = site.provider.kind === 'static' ? {...ctx, stateDir: path.join(ctx.stateDir, site.name)} : ctx
    return {site: site.name, provider: KINDS[site.provider.kind](view.nodeset, view.plan)(siteCtx, site.name)}
  })
  return new SitesProvider(sites, plan)
}

/** A deployment's nodes across its sites: every request, record and node goes to its site's provider. */
export class SitesProvider implements Provider {
  readonly kind: ProviderKind
  private readonly siteOfNode = new Map<string, string>()

  constructor(
    readonly sites: Array<{site: string; provider: Provider}>,
    plan: Plan,
  ) {
    this.kind = sites[0].provider.kind
    for (const node of plan.nodes) if (node.site) this.siteOfNode.set(node.name, node.site)
  }

  /** The provider of a site. */
  of(site: string): Provider {
    const found = this.sites.find((s) => s.site === site)
    if (!found) throw new Error(`deployment has no site ${site}`)
    return found.provider
  }

  private providerOf(node: string): Provider {
    const site = this.siteOfNode.get(node)
    if (!site) throw new Error(`node ${node} belongs to no site of this deployment (see nodeset list-nodes)`)
    return this.of(site)
  }

  private bySite<T extends {name: string}>(items: T[]): Array<[Provider, T[]]> {
    const groups = new Map<Provider, T[]>()
    for (const item of items) {
      const provider = this.providerOf(item.name)
      groups.set(provider, [...(groups.get(provider) ?? []), item])
    }
    return [...groups]
  }

  /** Every site's network; two local sites' bridges are routed to each other through this machine. */
  async prepare(): Promise<{operatorAddress?: string}> {
    await this.prepareSites()
    return {}
  }

  /** Make every site's network ready; where each site's nodes reach the operator (its embedded server). */
  async prepareSites(): Promise<Map<string, string | undefined>> {
    const addresses = new Map<string, string | undefined>()
    for (const {site, provider} of this.sites) addresses.set(site, (await provider.prepare()).operatorAddress)
    if (this.sites.filter((s) => s.provider.kind === 'local').length > 1) routeBetweenBridges()
    return addresses
  }

  async create(requests: NodeRequest[]): Promise<NodeRecord[]> {
    const created = await Promise.all(this.bySite(requests).map(([provider, list]) => provider.create(list)))
    return created.flat()
  }

  async list(): Promise<NodeRecord[]> {
    const lists = await Promise.all(this.sites.map(async (s) => ({site: s.site, records: await s.provider.list()})))
    // A node the file no longer has is still known by the site that listed it (to destroy it there).
    for (const {site, records} of lists) for (const r of records) this.siteOfNode.set(r.name, site)
    return lists.flatMap((l) => l.records)
  }

  async destroy(nodes: NodeRecord[]): Promise<void> {
    for (const [provider, list] of this.bySite(nodes)) await provider.destroy(list)
  }

  sshTarget(node: NodeRecord) {
    return this.providerOf(node.name).sshTarget(node)
  }

  /**
   * Pinned keys when every site's nodes are nodeset's own; else a static site's policy (pins are
   * checked too), without trust on first use when other sites' nodes share it: a node nodeset created
   * is trusted only with the keys it reported.
   */
  hostKeyPolicy(): HostKeyPolicy {
    const policies = this.sites.map((s) => s.provider.hostKeyPolicy())
    const lenient = policies.find((p) => p.mode === 'static')
    if (!lenient) return policies[0]
    return policies.every((p) => p.mode === 'static') ? lenient : {...lenient, trustOnFirstUse: false}
  }
}

/** Let this machine forward between the bridges of local sites (net.ipv4.ip_forward). */
function routeBetweenBridges(): void {
  const file = '/proc/sys/net/ipv4/ip_forward'
  if (fs.readFileSync(file, 'utf8').trim() !== '1') fs.writeFileSync(file, '1\n')
}
