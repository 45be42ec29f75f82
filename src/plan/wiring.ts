/**
 * The files that wire nodes together, built as data: the role map (`/etc/nodeset/roles`, the
 * silverlining format, and `roles.json`) and the managed block of `/etc/hosts`. Pure functions,
 * used by the config server (for the agent), by setup-node and by `--etc-hosts` on the operator's machine.
 * The block's markers and its merge into a hosts file are core/hostsblock.ts.
 */
import {hostsMarkers} from '../core/hostsblock.js'

export {hostsMarkers, mergeHostsBlock, removeHostsBlock} from '../core/hostsblock.js'

export interface RoleMember {
  name: string
  role: string
  index: number
  ip?: string
}

/** `service:mysql` is written `service.mysql` in the role map, as in the seed. */
export function roleKey(role: string): string {
  return role.replace(/^service:/, 'service.')
}

function ordered(members: RoleMember[]): RoleMember[] {
  const rank = (role: string): number =>
    role === 'appserver' ? 0 : role.startsWith('service:') ? 1 : role === 'balancer' ? 3 : 2
  return [...members].sort(
    (a, b) =>
      rank(a.role) - rank(b.role) || a.role.localeCompare(b.role) || a.index - b.index || a.name.localeCompare(b.name),
  )
}

/** `appserver = app1.foobar.com 10.4.3.2`, one line per node; a node with no address yet has none. */
export function renderRoleMap(members: RoleMember[]): string {
  return ordered(members)
    .map((m) => `${roleKey(m.role)} = ${m.name}${m.ip ? ` ${m.ip}` : ''}\n`)
    .join('')
}

export function renderRolesJson(members: RoleMember[]): string {
  const roles: Record<string, Array<{name: string; ip: string | null; index: number}>> = {}
  for (const m of ordered(members)) (roles[m.role] ??= []).push({name: m.name, ip: m.ip ?? null, index: m.index})
  return JSON.stringify(roles, null, 2) + '\n'
}

/** The managed block: markers around `IP name [short]` lines for every node with an address. */
export function renderHostsBlock(
  deployment: string,
  members: RoleMember[],
  extraNames: Record<string, string[]> = {},
): string {
  const {begin, end} = hostsMarkers(deployment)
  const lines = ordered(members)
    .filter((m) => m.ip)
    .map((m) => {
      const names = [m.name, ...(extraNames[m.name] ?? [])]
      const short = m.name.split('.')[0]
      if (short !== m.name && !names.includes(short)) names.push(short)
      return `${m.ip} ${names.join(' ')}`
    })
  return [begin, ...lines, end].join('\n') + '\n'
}
