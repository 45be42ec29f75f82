/** What the commands print as text: tables and summaries of what the operations returned. Pure. */
import type {DeploymentStatus} from '../configserver/protocol.js'
import type {DeployResult} from '../deploy/update.js'
import type {AppserverReleases} from '../operations/deploy.js'
import type {NodeRow} from '../operations/nodes.js'
import type {SitesStatus} from '../operations/sites.js'
import type {NodeListing} from '../operations/status.js'
import {table} from '../plan/render.js'
import type {StepReport} from '../setup/runner.js'

/** The config server's report: a row per service, the node's columns on its first row. */
export function statusText(status: DeploymentStatus): string {
  const none = {
    name: '-',
    status: '-',
    waitingFor: undefined as string[] | undefined,
    exitCode: undefined as number | undefined,
  }
  const rows = status.instances.flatMap((i) =>
    (i.services.length ? i.services : [none]).map((s, k) => [
      k === 0 ? i.id : '',
      k === 0 ? (i.address ?? '-') : '',
      k === 0 ? (i.lastContact ?? 'never') : '',
      s.name,
      s.status + (s.exitCode !== undefined ? ` (exit ${s.exitCode})` : ''),
      s.waitingFor?.join('; ') ?? '',
    ]),
  )
  return [
    `deployment ${status.deployment}: ${status.state}${status.reason ? ` — ${status.reason}` : ''}`,
    '',
    table(['NODE', 'ADDRESS', 'LAST PHONE-HOME', 'SERVICE', 'STATE', 'WAITING FOR'], rows),
    ...('sites' in status ? ['', sitesStatusText(status as SitesStatus)] : []),
  ].join('\n')
}

const ms = (value: number | undefined) =>
  value === undefined ? '-' : value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`

/** Per site: its config server and its link to each other site; then what it knows of the others' instances. */
export function sitesStatusText(status: SitesStatus): string {
  const links = status.sites.flatMap((s) =>
    (s.links.length ? s.links : [undefined]).map((link, k) => [
      k === 0 ? s.site : '',
      k === 0 ? s.configServer : '',
      k === 0 ? s.state : '',
      link ? `${link.site} ${link.state}` : 'no link reported',
      link?.lastHeartbeatAt ?? '-',
      ms(link?.lagMs),
      k === 0 && s.refused ? String(s.refused.badSignature + s.refused.notOwner + s.refused.replayed) : '',
    ]),
  )
  const remote = status.sites.flatMap((s) => s.remote.map((r) => [s.site, r.id, r.site ?? '-', ms(r.factsAgeMs)]))
  return [
    table(['SITE', 'CONFIG SERVER', 'STATE', 'LINK', 'LAST HEARTBEAT', 'LAG', 'REFUSED'], links),
    ...(remote.length ? ['', table(['SITE', 'KNOWS', 'OWNED BY', 'FACTS AGE'], remote)] : []),
  ].join('\n')
}

export function createdTable(rows: NodeRow[]): string {
  return table(
    ['NODE', 'ROLE', 'ID', 'ADDRESS', 'STATE', 'PHONED HOME'],
    rows.map((r) => [
      ...[r.name, r.role, r.id ?? '-', r.address ?? '-'],
      ...[r.createdNow ? `${r.state} (new)` : r.state, r.phonedHome ?? 'no'],
    ]),
  )
}

export function nodesTable(rows: NodeListing[]): string {
  const sites = rows.some((r) => r.site)
  return table(
    ['NODE', 'ROLE', ...(sites ? ['SITE'] : []), 'ID', 'ADDRESS', 'STATE', 'LAST PHONE-HOME'],
    rows.map((r) => [
      ...[r.name + (r.planned ? '' : ' (not in file)'), r.role, ...(sites ? [r.site ?? '-'] : [])],
      ...[r.id ?? '-', r.address ?? '-', r.state, r.lastPhoneHome ?? '-'],
    ]),
  )
}

/** Every step's result, then the last lines of each failed step's output. */
export function setupText(reports: StepReport[]): string {
  const rows = reports.map((r) => [r.node, r.step, r.status, r.message ?? ''])
  const tails = reports
    .filter((r) => r.status === 'failed' && r.tail)
    .map((r) => `\n--- ${r.node} ${r.step} (last lines) ---\n${r.tail}`)
  return ['\n' + table(['NODE', 'STEP', 'RESULT', 'DETAIL'], rows), ...tails].join('\n')
}

export function deployTable(result: DeployResult): string {
  return table(
    ['APPSERVER', 'BEFORE', 'NOW', 'RESULT', 'IN ROTATION'],
    result.nodes.map((n) => [n.node, n.before ?? '-', n.release ?? '-', n.outcome, n.inRotation ? 'yes' : 'no']),
  )
}

export function releasesTable(nodes: AppserverReleases[]): string {
  const state = (n: AppserverReleases, r: AppserverReleases['releases'][number]) =>
    [r.current ? `current${n.running ? '' : ' (stopped)'}` : '', r.previous ? 'previous' : '']
      .filter(Boolean)
      .join(', ')
  const rows = nodes.flatMap((n) =>
    n.releases.length === 0
      ? [[n.node, '-', '-', 'no releases']]
      : n.releases.map((r, i) => [i === 0 ? n.node : '', r.id, r.createdAt ?? '-', state(n, r)]),
  )
  return table(['APPSERVER', 'RELEASE', 'CREATED', 'STATE'], rows)
}

interface ServiceListing {
  name: string
  description: string
  provides: string[]
  params: Record<string, {secret?: boolean; default?: string; required?: boolean; description: string}>
}

/** The services a role can run, then each one's params with their defaults (secrets not shown). */
export function servicesText(services: ServiceListing[]): string {
  const parts = [
    table(
      ['SERVICE', 'PROVIDES', 'DESCRIPTION'],
      services.map((s) => [s.name, s.provides.join(' ') || '-', s.description]),
    ),
  ]
  const shownDefault = (p: ServiceListing['params'][string]) =>
    p.secret ? '(secret)' : p.default === undefined ? (p.required ? '(required)' : '-') : p.default || '""'
  for (const s of services) {
    const params = Object.entries(s.params)
    if (params.length === 0) continue
    const rows = params.map(([name, p]) => [`  ${name}`, shownDefault(p), p.description])
    parts.push(`\n${s.name} params:`, table(['  PARAM', 'DEFAULT', 'DESCRIPTION'], rows))
  }
  return parts.join('\n')
}

/** Each line of a chunk of a node's output, prefixed by the node. */
export function prefixLines(node: string, chunk: string): string {
  return chunk
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => `${node}: ${line}`)
    .join('\n')
}

/** After exec: each node's exit code (or why it could not run), failures first. */
export function execText(outcomes: Array<{node: string; code: number; error?: string}>): string {
  const sorted = [...outcomes].sort((a, b) => Number(a.code === 0) - Number(b.code === 0))
  const rows = sorted.map((o) => [
    o.node,
    o.error ? 'not run' : String(o.code),
    o.error ?? (o.code === 0 ? 'ok' : 'failed'),
  ])
  const failed = outcomes.filter((o) => o.code !== 0).length
  return `\n${table(['NODE', 'EXIT', 'RESULT'], rows)}\n${outcomes.length - failed} ok, ${failed} failed`
}

/** A dry run, one line per kind of change. */
export function previewText(
  p: {deployment: string; exist: string[]; create: string[]; extra: string[]; steps: Array<{node: string}>},
  opts: {prune: boolean; apps?: string[]; title?: string},
): string {
  const list = (names: string[]) => names.join(', ') || 'none'
  const lines = [
    opts.title ?? `dry run of ${p.deployment}: nothing was changed`,
    `  exist:          ${list(p.exist)}`,
    `  would create:   ${list(p.create)}`,
    opts.prune
      ? `  would destroy:  ${list(p.extra)}`
      : `  not in file:    ${list(p.extra)} (kept; --prune destroys them)`,
  ]
  if (opts.apps) {
    lines.push(`  would set up:   ${p.steps.length} nodes (steps whose content is unchanged are skipped)`)
    lines.push(`  would deploy:   ${list(opts.apps)} (no new release where the content is current)`)
  }
  return lines.join('\n')
}
