/**
 * Versions of a deployment's role map, and deltas between them, for the server and its clients. A
 * version names the content (a hash of the map's canonical JSON: roles in code-unit order, members
 * in their order), so replicas agree on it and a client can check the map it rebuilt. A delta says
 * what turns the map of one version into another's: whole member lists for the roles whose
 * membership changed, addresses for members of the others.
 */
import {createHash} from 'node:crypto'
import type {RoleMapJson, RoleMember, RolesDelta} from './protocol.js'

export type {RoleMapJson, RoleMember, RolesDelta} from './protocol.js'

/** The map with its roles in code-unit order (the canonical form the version hashes). */
export function canonicalRoles(map: RoleMapJson): RoleMapJson {
  const out: RoleMapJson = {}
  for (const role of Object.keys(map).sort())
    out[role] = map[role].map((m) => (m.ip === undefined ? {name: m.name} : {name: m.name, ip: m.ip}))
  return out
}

/** The version of a canonical map's JSON. */
export function rolesVersionOfJson(json: string | Buffer): string {
  return createHash('sha256').update(json).digest('base64url').slice(0, 22)
}

export function rolesVersionOf(map: RoleMapJson): string {
  return rolesVersionOfJson(JSON.stringify(canonicalRoles(map)))
}

function sameNames(a: RoleMember[], b: RoleMember[]): boolean {
  return a.length === b.length && a.every((m, i) => m.name === b[i].name)
}

/** What turns `before` (version `from`) into `after` (version `to`). */
export function diffRoles(from: string, before: RoleMapJson, to: string, after: RoleMapJson): RolesDelta {
  const roles: Record<string, RoleMember[] | null> = {}
  const addresses: Record<string, string | null> = {}
  for (const [role, members] of Object.entries(after)) {
    const old = before[role]
    if (!old || !sameNames(old, members)) roles[role] = members
    else
      for (let i = 0; i < members.length; i++)
        if (members[i].ip !== old[i].ip) addresses[members[i].name] = members[i].ip ?? null
  }
  for (const role of Object.keys(before)) if (!(role in after)) roles[role] = null
  return {
    from,
    to,
    ...(Object.keys(roles).length > 0 ? {roles} : {}),
    ...(Object.keys(addresses).length > 0 ? {addresses} : {}),
  }
}

/** The map `delta` leads to from `map` (left as it is), in canonical form; check it with `rolesVersionOf`. */
export function applyRolesDelta(map: RoleMapJson, delta: RolesDelta): RoleMapJson {
  const out: RoleMapJson = {}
  for (const [role, members] of Object.entries(map)) out[role] = members.map((m) => ({...m}))
  for (const [role, members] of Object.entries(delta.roles ?? {})) {
    if (members === null) delete out[role]
    else out[role] = members.map((m) => ({...m}))
  }
  const replaced = new Set(Object.keys(delta.roles ?? {}))
  const byName = new Map<string, RoleMember>()
  for (const [role, members] of Object.entries(out))
    if (!replaced.has(role)) for (const m of members) byName.set(m.name, m)
  for (const [name, ip] of Object.entries(delta.addresses ?? {})) {
    const member = byName.get(name)
    if (!member) continue
    if (ip === null) delete member.ip
    else member.ip = ip
  }
  return canonicalRoles(out)
}

/**
 * The maps of recent versions, shared by every registration of the process: a version names its
 * content, so whichever registration stored it, its map is that version's. Bounded by the members
 * held; the least recently used go first.
 */
export class RoleVersions {
  private readonly maps = new Map<string, {map: RoleMapJson; members: number}>()
  private members = 0

  constructor(private readonly maxMembers = 200_000) {}

  remember(version: string, map: RoleMapJson): void {
    const known = this.maps.get(version)
    if (known) {
      this.maps.delete(version)
      this.maps.set(version, known)
      return
    }
    const members = Object.values(map).reduce((n, list) => n + list.length, 0) + 1
    this.maps.set(version, {map, members})
    this.members += members
    for (const [old, entry] of this.maps) {
      if (this.members <= this.maxMembers || old === version) break
      this.maps.delete(old)
      this.members -= entry.members
    }
  }

  get(version: string): RoleMapJson | undefined {
    return this.maps.get(version)?.map
  }
}

export const roleVersions = new RoleVersions()
