/**
 * The sites of a plan: which nodes each one runs, a site's own part of the plan, and how a site is shown
 * (the broker's password never). A plan without sites is one site, unnamed. Pure.
 */
import {REDACTED} from '../core/redact.js'
import {formatSource} from '../core/source.js'
import {table} from './render.js'
import type {Plan, SitePlan} from './types.js'

/** The site of a node, undefined for a plan without sites (or a node it does not have). */
export function siteOf(plan: Plan, node: string): string | undefined {
  return plan.nodes.find((n) => n.name === node)?.site
}

/** The part of the plan one site runs: its nodes, their steps, the references they make. */
export function sitePart(plan: Plan, site: string): Plan {
  const mine = new Set(plan.nodes.filter((n) => n.site === site).map((n) => n.name))
  return {
    ...plan,
    nodes: plan.nodes.filter((n) => mine.has(n.name)),
    steps: plan.steps.filter((s) => mine.has(s.node)),
    references: plan.references.filter((r) => mine.has(r.from.node)),
  }
}

/** The broker URL with its password hidden. */
export function brokerShown(url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = REDACTED
    return parsed.toString()
  } catch {
    return REDACTED
  }
}

export interface SiteSummary {
  name: string
  source: string
  provider: string
  /** The local provider's network, when the site sets one. */
  subnet?: string
  configServer: string
  broker?: string
  nodes: string[]
}

export function siteSummaries(plan: Plan): SiteSummary[] {
  return (plan.sites ?? []).map((site: SitePlan) => ({
    name: site.name,
    source: formatSource(site.source),
    provider: site.provider.kind,
    ...(site.provider.kind === 'local' && site.provider.settings.subnet
      ? {subnet: site.provider.settings.subnet.value}
      : {}),
    configServer: site.configServer,
    ...(site.broker ? {broker: brokerShown(site.broker)} : {}),
    nodes: plan.nodes.filter((n) => n.site === site.name).map((n) => n.name),
  }))
}

/** `plan --json`: each node with its site, and the sites. Nothing changes for a plan without sites. */
export function withSites(json: unknown, plan: Plan): unknown {
  if (!plan.sites?.length || typeof json !== 'object' || json === null) return json
  const shown = json as {nodes?: Array<{name: string}>}
  const nodes = shown.nodes?.map((n) => ({...n, site: siteOf(plan, n.name)}))
  return {...shown, ...(nodes ? {nodes} : {}), sites: siteSummaries(plan)}
}

/** `plan`'s table of sites; empty for a plan without sites. */
export function sitesText(plan: Plan): string {
  const sites = siteSummaries(plan)
  if (sites.length === 0) return ''
  const rows = sites.map((s) => [
    s.name,
    s.provider + (s.subnet ? ` ${s.subnet}` : ''),
    s.configServer,
    s.broker ?? '-',
    s.nodes.join(' '),
  ])
  return `sites (${sites.length}):\n${table(['SITE', 'PROVIDER', 'CONFIG SERVER', 'BROKER', 'NODES'], rows)}`
}
