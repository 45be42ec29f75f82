/**
 * The static provider's `[provider]` settings: `hosts` (one per planned node), `ssh_user`, `ssh_key`.
 */
import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import type {Nodeset} from '../nodeset/types.js'
import type {Plan} from '../plan/types.js'
import {ignoredKeyProblems} from './provider-keys.js'

export interface StaticHost {
  name: string
  /** Address or resolvable name; defaults for the port and user come from ~/.ssh/config. */
  address: string
  port?: number
  role?: string
  index?: number
}

export interface StaticSettings {
  hosts: StaticHost[]
  /** Login user; default from ~/.ssh/config, else the operator's own. */
  sshUser?: string
  /** Private key file; default from ~/.ssh/config, the agent or ~/.ssh/id_*. */
  sshKey?: string
}

/**
 * Read the settings; every planned node must be in hosts (checked when a plan is given). Throws
 * DiagnosticsError with every problem and its file:line.
 */
export function staticSettings(nodeset: Nodeset, plan?: Plan): StaticSettings {
  const settings = nodeset.provider.settings
  const text = (key: string) => settings[key]?.value.trim() || undefined
  const problems: Diagnostic[] = ignoredKeyProblems('static', settings, nodeset.provider.source)
  let hosts: StaticHost[] = []
  if (!text('hosts'))
    problems.push({
      message: 'the static provider needs hosts',
      source: settings.hosts?.source ?? nodeset.provider.source,
      hint: 'add "hosts = app1.example.com=203.0.113.10 …", one name=address per node',
    })
  else
    try {
      hosts = parseStaticHosts(text('hosts')!)
    } catch (error) {
      problems.push({
        message: (error as Error).message,
        source: settings.hosts.source,
        hint: 'write hosts = NAME=ADDRESS[:PORT] …, one per planned node',
      })
    }
  const unlisted = hosts.length ? (plan?.nodes ?? []).filter((n) => !hosts.some((h) => h.name === n.name)) : []
  if (unlisted.length > 0)
    problems.push({
      message: `[provider] hosts does not list ${unlisted.map((n) => n.name).join(', ')}`,
      source: settings.hosts?.source ?? nodeset.provider.source,
      hint: `add ${unlisted.map((n) => `${n.name}=ADDRESS`).join(' ')}`,
    })
  if (problems.length > 0) throw new DiagnosticsError(problems)
  return {hosts, sshUser: text('ssh_user'), sshKey: text('ssh_key')}
}

/**
 * `hosts = app1.example.com=203.0.113.10 db.example.com=[2001:db8::5]:2222 cache.example.com`:
 * name=address[:port] entries separated by spaces, commas or newlines; a name alone is its own address.
 */
export function parseStaticHosts(value: string): StaticHost[] {
  const hosts: StaticHost[] = []
  for (const entry of value.split(/[\s,]+/).filter(Boolean)) {
    const [name, target = name, ...extra] = entry.split('=')
    const fail = (why: string): never => {
      throw new Error(
        `hosts entry "${entry}" ${why}: write name=address or name=address:port, e.g. app1.example.com=203.0.113.10:2222`,
      )
    }
    if (extra.length > 0 || !name || !target) fail('is not name=address')
    if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name)) fail(`has an invalid node name "${name}"`)
    const match =
      /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(target) ??
      (target.split(':').length > 2 ? [target, target] : /^([A-Za-z0-9._-]+)(?::(\d+))?$/.exec(target))
    if (!match) return fail(`has an invalid address "${target}"`)
    const port = match[2] === undefined ? undefined : Number(match[2])
    if (port !== undefined && (port < 1 || port > 65535)) fail(`has port ${port}, outside 1-65535`)
    if (hosts.some((h) => h.name === name)) fail(`lists ${name} a second time`)
    hosts.push({name, address: match[1], ...(port ? {port} : {})})
  }
  if (hosts.length === 0)
    throw new Error('hosts is empty: list the servers as name=address, e.g. hosts = app1.example.com=203.0.113.10')
  return hosts
}
