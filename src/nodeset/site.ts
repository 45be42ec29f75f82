/**
 * `[site:NAME]`: one cloud or data centre of a deployment that spans several. A site takes the keys
 * `[provider]` takes (a `[provider]` section, when there is one, gives every site its defaults), its own
 * `config_server` and the `broker` its config server federates through; a role says `site = NAME`.
 * `provider = KIND` names the kind (local, ec2, static); any other name is looked up as
 * `[provider:NAME]` in ~/.nodeset.conf, as `[provider] name = NAME` is.
 */
import {didYouMean} from '../core/diagnostics.js'
import type {Merged, MergedSection, MergedValue} from './merge.js'
import {CREDENTIAL_KEYS, PROVIDER_KEYS_OF, readProvider} from './provider.js'
import type {Reader} from './reader.js'
import type {GeneralSpec, ProviderKind, RoleSpec, SiteSpec, Value} from './types.js'

const KINDS: ProviderKind[] = ['ec2', 'local', 'static']
const PROVIDER_KEYS = [...new Set(['name', 'provider', ...CREDENTIAL_KEYS, ...Object.values(PROVIDER_KEYS_OF).flat()])]
const SITE_KEYS = ['config_server', 'broker', ...PROVIDER_KEYS]
/** A site's name is a path segment, a broker routing-key word and a queue name: no dots. */
const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/

export const isSiteSection = (name: string): boolean => name.startsWith('site:')

/** Every `[site:NAME]` of the file, in file order; an empty list for a file without sites. */
export function readSites(r: Reader, sections: Merged, general: GeneralSpec): SiteSpec[] {
  const defaults = sections.get('provider')
  const sites: SiteSpec[] = []
  for (const [name, section] of sections) {
    if (!isSiteSection(name)) continue
    const site = name.slice('site:'.length)
    if (!SITE_NAME.test(site))
      r.problem(
        `[${name}]: "${site}" is not a valid site name`,
        section.source,
        'use letters, digits, "_" and "-" (up to 32), starting with a letter or digit; no dots',
      )
    r.unknownKeys(section, SITE_KEYS)
    const provider = readProvider(r, providerSection(section, defaults), section.source.file)
    sites.push({
      name: site,
      source: section.source,
      provider,
      configServer: siteConfigServer(r, section, general),
      broker: siteBroker(r, section, general),
    })
  }
  return sites
}

/** The site's provider keys over `[provider]`'s; `provider = NAME` that is not a kind becomes a lookup of NAME. */
function providerSection(section: MergedSection, defaults: MergedSection | undefined): MergedSection {
  const values = new Map<string, MergedValue>(defaults?.values ?? [])
  for (const [key, v] of section.values) if (PROVIDER_KEYS.includes(key)) values.set(key, v)
  const provider = section.values.get('provider')
  if (provider && !KINDS.includes(provider.value.trim() as ProviderKind) && !section.values.has('name')) {
    values.delete('provider')
    values.set('name', provider)
  }
  return {name: section.name, source: section.source, values}
}

function siteConfigServer(r: Reader, section: MergedSection, general: GeneralSpec): Value {
  const v = section.values.get('config_server')
  if (!v) return {value: general.configServer, source: section.source}
  const text = r.text(v)
  if (text !== 'embedded' && !/^https?:\/\/[^\s/]+/.test(text))
    r.problem(
      `config_server must be "embedded" or an http(s) URL, not "${text}"`,
      v,
      `e.g. config_server = embedded, or https://config.${section.name.slice(5)}.example.com:8443`,
    )
  return {value: text, source: v.source}
}

/** The broker URL; its password is a secret. An embedded server needs one; a standalone one has its own --broker. */
function siteBroker(r: Reader, section: MergedSection, general: GeneralSpec): Value | undefined {
  const v = section.values.get('broker')
  const server = section.values.get('config_server')
  const embedded = (server ? r.text(server) : general.configServer) === 'embedded'
  if (!v) {
    if (embedded)
      r.problem(
        `[${section.name}] has no broker`,
        section.source,
        "add broker = amqp://USER:PASSWORD@HOST:5672/VHOST: the RabbitMQ through which this site's config server shares its nodes' facts with the other sites",
      )
    return undefined
  }
  const text = r.text(v)
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {
    url = undefined
  }
  if (!url || (url.protocol !== 'amqp:' && url.protocol !== 'amqps:') || !url.hostname) {
    r.problem(
      'broker must be an amqp:// or amqps:// URL',
      v,
      'e.g. broker = amqps://nodeset-inside:PASSWORD@broker.example.com:5671/nodeset-inside',
    )
    return {value: text, source: v.source}
  }
  if (url.password) {
    r.secrets.add(url.password)
    r.secrets.add(decodeURIComponent(url.password))
  }
  return {value: text, source: v.source}
}

/**
 * Give every role its site, and refuse what cannot be placed: a role naming a site the file lacks, a
 * role without `site =` when there are two sites or more (with one, it is that one), a site without
 * nodes. Without sites, `site =` names a site that does not exist.
 */
export function placeRoles(r: Reader, roles: RoleSpec[], sites: SiteSpec[]): void {
  const names = sites.map((s) => s.name)
  for (const role of roles) {
    if (!role.site) {
      if (sites.length === 1) role.site = {value: sites[0].name, source: role.source}
      else if (sites.length > 1)
        r.problem(
          `[${role.section}] does not say which site its nodes run in`,
          role.source,
          `add site = ${names.join(' or site = ')}`,
        )
      continue
    }
    if (names.includes(role.site.value)) continue
    const guess = didYouMean(role.site.value, names)
    r.problem(
      `site = ${role.site.value}, but there is no [site:${role.site.value}]`,
      role.site.source,
      guess
        ? `did you mean site = ${guess}?`
        : sites.length
          ? `sites are: ${names.join(', ')}`
          : `add a [site:${role.site.value}] section (its provider, config_server and broker), or remove site =`,
    )
  }
  for (const site of sites)
    if (!roles.some((role) => role.site?.value === site.name))
      r.problem(
        `[site:${site.name}] has no nodes`,
        site.source,
        `add site = ${site.name} to the roles that run there, or remove [site:${site.name}]`,
      )
}
