/**
 * The `[provider]` settings of a nodeset (and of each site), parsed and checked by the provider of
 * that kind, every problem with its file:line: what `plan` runs, offline, without loading a
 * provider. The factory (index.ts) builds the provider from what these return.
 */
import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import type {Nodeset, ProviderKind, SiteSpec} from '../nodeset/types.js'
import type {Plan} from '../plan/types.js'
import {instanceTypeProblem} from './ec2-options.js'
import {ec2Settings} from './ec2-settings.js'
import {DEFAULT_SUBNET, parseSubnet, subnetsOverlap, type Subnet} from './local-network.js'
import {localSettings} from './local-settings.js'
import {staticSettings} from './static-settings.js'

/** Each kind's settings, parsed and checked (throwing DiagnosticsError). Without a plan, the checks that need the planned nodes are left out. */
export const SETTINGS = {
  local: (nodeset: Nodeset) => localSettings(nodeset),
  ec2: (nodeset: Nodeset) => {
    const problems = roleSizeProblems(nodeset)
    let settings: ReturnType<typeof ec2Settings> | undefined
    try {
      settings = ec2Settings(nodeset.provider.settings, nodeset.provider.source)
    } catch (error) {
      if (!(error instanceof DiagnosticsError)) throw error
      problems.unshift(...error.diagnostics)
    }
    if (!settings || problems.length) throw new DiagnosticsError(problems)
    return settings
  },
  static: (nodeset: Nodeset, plan: Plan | undefined) => staticSettings(nodeset, plan),
} satisfies Record<ProviderKind, (nodeset: Nodeset, plan: Plan | undefined) => unknown>

/** The same checks without building anything or calling anyone (for `plan`, offline). */
export function checkProviderSettings(nodeset: Nodeset, plan?: Plan): Diagnostic[] {
  if (nodeset.sites?.length) return checkSites(nodeset, plan)
  try {
    SETTINGS[nodeset.provider.kind](nodeset, plan)
    return []
  } catch (error) {
    if (error instanceof DiagnosticsError) return error.diagnostics
    throw error
  }
}

/** What will not work as the file stands, though nothing in it is malformed: said, not refused. */
export function providerWarnings(nodeset: Nodeset): Diagnostic[] {
  if (nodeset.sites?.length) return siteWarnings(nodeset)
  if (nodeset.provider.kind !== 'ec2' || nodeset.general.configServer !== 'embedded') return []
  return [
    {
      message:
        'EC2 nodes cannot reach a config server embedded in the command on your machine: create-node and up will refuse',
      source: nodeset.provider.settings.provider?.source ?? nodeset.provider.source,
      hint: 'run "nodeset config-server" on a host the nodes reach, and set [general] config_server = URL',
    },
  ]
}

/** A role's own `size` on ec2 must name an instance type EC2 could know. */
function roleSizeProblems(nodeset: Nodeset): Diagnostic[] {
  return nodeset.roles.flatMap((role) => {
    const p = role.size ? instanceTypeProblem(role.size.value) : undefined
    return p ? [{message: p.message, source: role.size!.source, hint: p.hint}] : []
  })
}

/*
 * Sites. Each [site:NAME] has a provider of its own, built and checked as [provider] is, with the file
 * seen as that site alone (its provider, its roles, its nodes). Two local sites on this machine are two
 * bridges, each with its own state root, that reach each other through the host, as sites in clouds reach
 * each other through their VPN.
 */

/** The nodeset and plan as one site sees them: its provider, its roles and its nodes. */
export function siteView(nodeset: Nodeset, site: SiteSpec, plan: Plan | undefined): {nodeset: Nodeset; plan?: Plan} {
  const roles = nodeset.roles.filter((r) => r.site?.value === site.name)
  const nodes = plan?.nodes.filter((n) => n.site === site.name)
  const names = new Set(nodes?.map((n) => n.name))
  const part = plan && {...plan, nodes: nodes!, steps: plan.steps.filter((s) => names.has(s.node))}
  return {nodeset: {...nodeset, provider: site.provider, roles}, plan: part}
}

export function checkSites(nodeset: Nodeset, plan: Plan | undefined): Diagnostic[] {
  const problems: Diagnostic[] = []
  for (const site of nodeset.sites ?? []) {
    const view = siteView(nodeset, site, plan)
    try {
      SETTINGS[site.provider.kind](view.nodeset, view.plan)
    } catch (error) {
      if (!(error instanceof DiagnosticsError)) throw error
      problems.push(...error.diagnostics)
    }
  }
  return [...problems, ...overlappingSubnets(nodeset.sites ?? [])]
}

/** Two local sites on one network would be one network: refused, at the second one's subnet. */
function overlappingSubnets(sites: SiteSpec[]): Diagnostic[] {
  const seen: Array<{site: SiteSpec; subnet: Subnet}> = []
  const problems: Diagnostic[] = []
  for (const site of sites.filter((s) => s.provider.kind === 'local')) {
    const setting = site.provider.settings.subnet
    let subnet: Subnet
    try {
      subnet = parseSubnet(setting?.value.trim() || DEFAULT_SUBNET)
    } catch {
      continue // reported by the site's own checks
    }
    const other = seen.find((s) => subnetsOverlap(s.subnet, subnet))
    if (other)
      problems.push({
        message: `the subnets of [site:${other.site.name}] (${other.subnet.cidr}) and [site:${site.name}] (${subnet.cidr}) overlap`,
        source: setting?.source ?? site.source,
        hint: `give each site a network of its own, e.g. subnet = ${nextSubnet(seen.map((s) => s.subnet))}`,
      })
    seen.push({site, subnet})
  }
  return problems
}

function nextSubnet(taken: Subnet[]): string {
  for (let third = 1; third < 255; third++) {
    const candidate = parseSubnet(`10.78.${third}.0/24`)
    if (!taken.some((t) => subnetsOverlap(t, candidate))) return candidate.cidr
  }
  return '10.79.0.0/24'
}

function siteWarnings(nodeset: Nodeset): Diagnostic[] {
  return (nodeset.sites ?? [])
    .filter((s) => s.provider.kind === 'ec2' && s.configServer.value === 'embedded')
    .map((s) => ({
      message: `the EC2 nodes of [site:${s.name}] cannot reach a config server embedded in the command on your machine: create-node and up will refuse`,
      source: s.provider.settings.provider?.source ?? s.source,
      hint: `run "nodeset config-server --site ${s.name} --broker …" on a host they reach, and set config_server = URL in [site:${s.name}]`,
    }))
}
