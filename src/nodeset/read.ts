/**
 * Reading a nodeset file: extends and `+=`/`-=` (merge.ts), `${…}` (interpolate.ts), then validation of
 * every section and key in one place. All problems are gathered and reported at once, each with the
 * file:line that set the value and a hint.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {type Diagnostic, DiagnosticsError, didYouMean} from '../core/diagnostics.js'
import type {SizeSpec, Source} from '../core/source.js'
import {type Catalog, isSecretName, loadCatalog} from '../services/catalog.js'
import {parseIni} from './ini.js'
import {Interpolator} from './interpolate.js'
import {type MergedSection, type MergedValue, readMerged, type ReaderIO} from './merge.js'
import type {GeneralSpec, Location, Nodeset, ProviderKind, ProviderSpec, RoleSpec, Value} from './types.js'

export const MAX_NODES = 1000

const GENERAL_KEYS = [
  'name',
  'base_domain',
  'set_etc_hosts',
  'extends',
  'config_server',
  'boot_timeout',
  'services_dir',
]
const PROVIDER_KEYS = [
  'name',
  'provider',
  'username',
  'secret',
  'secret_file',
  'region',
  'profile',
  'image',
  'image_owners',
  'size',
  'key_name',
  'subnet',
  'security_groups',
  'ssh_user',
  'ssh_key',
  'hosts',
  'bridge',
]
const ROLE_KEYS = ['nodes', 'node_name', 'size', 'services']
const APPSERVER_KEYS = [...ROLE_KEYS, 'locations', 'load_balancer']
const BALANCER_KEYS = [...ROLE_KEYS, 'hostnames']
const PROVIDERS: ProviderKind[] = ['ec2', 'local', 'static']
const KNOWN_SECTIONS = ['general', 'provider', 'appserver', 'balancer', 'service:NAME', 'role:NAME']

export const defaultIO = (): ReaderIO => ({
  readFile: (file) => {
    try {
      return fs.readFileSync(file, 'utf8')
    } catch {
      return undefined
    }
  },
  env: process.env,
})

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i

export function isValidHostname(name: string): boolean {
  return name.length <= 253 && name.split('.').every((label) => HOST_LABEL.test(label))
}

export function parseBool(text: string): boolean | undefined {
  const t = text.trim().toLowerCase()
  if (['true', 'yes', 'on', '1'].includes(t)) return true
  if (['false', 'no', 'off', '0'].includes(t)) return false
  return undefined
}

export function parseSize(text: string): SizeSpec | undefined {
  const words = text.trim().split(/\s+/)
  if (words.length === 1 && words[0]) return {kind: 'name', value: words[0]}
  if (words.length !== 2) return undefined
  const [kind, value] = words
  if (kind === 'id' || kind === 'name') return {kind, value}
  if (kind === 'ram') {
    const m = /^(\d+(?:\.\d+)?)\s*(MB|M|GB|G|GiB|MiB)?$/i.exec(value)
    if (!m) return undefined
    const gb = /^g/i.test(m[2] ?? 'MB')
    return {kind: 'ram', megabytes: Math.round(Number(m[1]) * (gb ? 1024 : 1))}
  }
  return undefined
}

/** `600`, `30s`, `10m`, `1h` → seconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)\s*(s|m|h)?$/.exec(text.trim())
  if (!m) return undefined
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1)
}

/** The role a section describes, or undefined for an unknown section. */
export function roleOfSection(section: string): string | undefined {
  if (section === 'appserver' || section === 'balancer') return section
  if (/^service:[A-Za-z0-9_-]+$/.test(section)) return section
  const custom = /^role:([A-Za-z0-9_-]+)$/.exec(section)
  return custom ? custom[1] : undefined
}

class Reader {
  readonly problems: Diagnostic[] = []
  readonly secrets = new Set<string>()

  constructor(
    private readonly interpolator: Interpolator,
    private readonly io: ReaderIO,
  ) {}

  text(v: MergedValue): string {
    return this.interpolator.resolve(v).trim()
  }

  value(v: MergedValue): Value {
    return {value: this.text(v), source: v.source}
  }

  problem(message: string, source: Source | undefined, hint?: string): void {
    this.problems.push({message, source, hint})
  }

  unknownKeys(section: MergedSection, known: string[], isParam?: (key: string) => boolean): void {
    for (const [key, v] of section.values) {
      if (known.includes(key) || isParam?.(key)) continue
      const guess = didYouMean(key, known)
      this.problem(
        `unknown key "${key}" in [${section.name}]`,
        v.source,
        guess ? `did you mean "${guess}"?` : `known keys: ${known.join(', ')}`,
      )
    }
  }

  noteSecrets(section: MergedSection): void {
    for (const [key, v] of section.values) {
      if (key === 'secret' || (isSecretName(key) && key !== 'secret_file')) {
        const text = this.text(v)
        if (text) this.secrets.add(text)
      }
    }
  }

  general(section: MergedSection | undefined, file: string): GeneralSpec {
    const get = (key: string) => section?.values.get(key)
    if (section) this.unknownKeys(section, GENERAL_KEYS)
    const name = get('name') ? this.text(get('name')!) : path.basename(file).replace(/\.conf$/, '')
    if (get('name') && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
      this.problem(
        `name "${name}" is not a valid deployment name`,
        get('name')!.source,
        'use letters, digits, ".", "_" and "-" (up to 63), starting with a letter or digit',
      )
    }
    let baseDomain: string | undefined
    if (get('base_domain')) {
      baseDomain = this.text(get('base_domain')!)
      if (!isValidHostname(baseDomain))
        this.problem(
          `base_domain "${baseDomain}" is not a valid domain name`,
          get('base_domain')!.source,
          'use labels of letters, digits and "-", separated by dots, e.g. foobar.com',
        )
    }
    let setEtcHosts = true
    if (get('set_etc_hosts')) {
      const b = parseBool(this.text(get('set_etc_hosts')!))
      if (b === undefined)
        this.problem(`set_etc_hosts must be true or false`, get('set_etc_hosts')!.source, 'write true or false')
      else setEtcHosts = b
    }
    let configServer = 'embedded'
    if (get('config_server')) {
      configServer = this.text(get('config_server')!)
      if (configServer !== 'embedded' && !/^https?:\/\/[^\s/]+/.test(configServer)) {
        this.problem(
          `config_server must be "embedded" or an http(s) URL, not "${configServer}"`,
          get('config_server')!.source,
          'e.g. config_server = https://config.example.com:8443',
        )
      }
    }
    let bootTimeoutSec = 900
    if (get('boot_timeout')) {
      const d = parseDuration(this.text(get('boot_timeout')!))
      if (d === undefined || d <= 0)
        this.problem(`boot_timeout must be a duration such as 300, 90s, 15m or 1h`, get('boot_timeout')!.source)
      else bootTimeoutSec = d
    }
    const servicesDirs = get('services_dir')
      ? this.text(get('services_dir')!)
          .split(/\s+/)
          .filter(Boolean)
          .map((d) => path.resolve(path.dirname(get('services_dir')!.source.file), d))
      : []
    return {name, baseDomain, setEtcHosts, configServer, bootTimeoutSec, servicesDirs}
  }

  provider(section: MergedSection | undefined, file: string): ProviderSpec {
    const source = section?.source ?? {file, line: 1}
    const settings: Record<string, Value> = {}
    if (!section) {
      this.problem(
        'no [provider] section',
        {file, line: 1},
        'add [provider] with "provider = local" (nodes on this machine), "ec2" or "static"',
      )
      return {kind: 'local', settings, source}
    }
    this.unknownKeys(section, PROVIDER_KEYS)
    const nameValue = section.values.get('name')
    if (nameValue) this.lookupProvider(this.text(nameValue), nameValue.source, settings)
    for (const [key, v] of section.values) if (key !== 'name') settings[key] = this.value(v)
    const secretFile = settings.secret_file
    if (secretFile) {
      const filePath = path.resolve(path.dirname(secretFile.source.file), secretFile.value)
      const content = this.io.readFile(filePath)
      if (content === undefined)
        this.problem(
          `secret_file ${secretFile.value}: cannot read it`,
          secretFile.source,
          'check the path (relative paths start at the nodeset file) and its permissions',
        )
      else {
        settings.secret = {value: content.trim(), source: secretFile.source}
      }
    }
    if (settings.secret?.value) this.secrets.add(settings.secret.value)
    const kind = settings.provider?.value
    if (!kind) {
      this.problem(
        '[provider] does not say which provider',
        source,
        `set "provider = local", "ec2" or "static"${nameValue ? `, or in [provider:${this.text(nameValue)}] of ~/.nodeset.conf` : ''}`,
      )
      return {kind: 'local', settings, source}
    }
    if (!PROVIDERS.includes(kind as ProviderKind)) {
      const guess = didYouMean(kind, PROVIDERS)
      this.problem(
        `unknown provider "${kind}"`,
        settings.provider.source,
        guess ? `did you mean "${guess}"?` : `use one of: ${PROVIDERS.join(', ')}`,
      )
      return {kind: 'local', settings, source}
    }
    if (kind === 'ec2' && !settings.image)
      this.problem(
        'the ec2 provider needs an image',
        source,
        'add "image = id ami-…" or "image = name debian-12-amd64-*"',
      )
    if (kind === 'static' && !settings.hosts)
      this.problem(
        'the static provider needs hosts',
        source,
        'add "hosts = app1.example.com=203.0.113.10 …", one name=address per node',
      )
    return {kind: kind as ProviderKind, settings, source}
  }

  /** `[provider] name = X` takes the keys of `[provider:X]` in ~/.nodeset.conf; the file's own keys win. */
  private lookupProvider(name: string, at: Source, settings: Record<string, Value>): void {
    const userFile = this.io.env.NODESET_CONFIG ?? path.join(this.io.env.HOME ?? os.homedir(), '.nodeset.conf')
    const text = this.io.readFile(userFile)
    if (text === undefined) {
      this.problem(
        `provider "${name}" is looked up in ${userFile}, which does not exist`,
        at,
        `create it with a [provider:${name}] section, or set "provider = …" here`,
      )
      return
    }
    const raw = parseIni(text, userFile)
    this.problems.push(...raw.problems)
    const section = raw.sections.find((s) => s.name === `provider:${name}`)
    if (!section) {
      const names = raw.sections
        .filter((s) => s.name.startsWith('provider:'))
        .map((s) => s.name.slice('provider:'.length))
      const guess = didYouMean(name, names)
      this.problem(
        `${userFile} has no [provider:${name}]`,
        at,
        guess ? `did you mean "${guess}"?` : `it defines: ${names.join(', ') || 'no providers'}`,
      )
      return
    }
    for (const entry of section.entries) {
      if (!PROVIDER_KEYS.includes(entry.key) || entry.key === 'name') {
        this.problem(
          `unknown key "${entry.key}" in [provider:${name}]`,
          {file: userFile, line: entry.line},
          `known keys: ${PROVIDER_KEYS.filter((k) => k !== 'name').join(', ')}`,
        )
        continue
      }
      settings[entry.key] = {value: entry.value, source: {file: userFile, line: entry.line}}
    }
  }

  role(section: MergedSection, role: string, catalog: Catalog): RoleSpec {
    const get = (key: string) => section.values.get(key)
    const isBalancer = role === 'balancer'
    const known = role === 'appserver' ? APPSERVER_KEYS : isBalancer ? BALANCER_KEYS : ROLE_KEYS
    const services = this.services(section, role, catalog)
    const params: RoleSpec['params'] = {}
    const isParam = (key: string): boolean => {
      const dot = key.indexOf('.')
      if (dot <= 0) return false
      const [service, param] = [key.slice(0, dot), key.slice(dot + 1)]
      const v = get(key)!
      if (!services.value.includes(service)) {
        this.problem(
          `"${key}" sets a param of service ${service}, which [${section.name}] does not run`,
          v.source,
          `its services are: ${services.value.join(', ') || 'none'}; add ${service} to "services" or fix the name`,
        )
        return true
      }
      const meta = catalog.get(service)
      if (meta && !(param in meta.params)) {
        const guess = didYouMean(param, Object.keys(meta.params))
        this.problem(
          `service ${service} has no param "${param}"`,
          v.source,
          guess
            ? `did you mean "${service}.${guess}"?`
            : `its params: ${Object.keys(meta.params).join(', ') || 'none'} (see nodeset services)`,
        )
        return true
      }
      ;(params[service] ??= {})[param] = {value: this.text(v), source: v.source}
      if (meta?.params[param]?.secret || isSecretName(param)) this.secrets.add(this.text(v))
      return true
    }
    this.unknownKeys(section, known, isParam)

    let nodes: Value<number> = {value: 1, source: section.source}
    if (get('nodes')) {
      const text = this.text(get('nodes')!)
      const n = /^\d+$/.test(text) ? Number(text) : NaN
      const max = isBalancer ? 1 : MAX_NODES
      if (!Number.isInteger(n) || n < 1 || n > max) {
        this.problem(
          `nodes must be a whole number from 1 to ${max}, not "${text}"`,
          get('nodes')!.source,
          isBalancer ? 'one balancer node is supported' : undefined,
        )
      } else nodes = {value: n, source: get('nodes')!.source}
    }
    let size: Value<SizeSpec> | undefined
    if (get('size')) {
      const spec = parseSize(this.text(get('size')!))
      if (!spec)
        this.problem(
          `size "${this.text(get('size')!)}" is not understood`,
          get('size')!.source,
          'write "id X", "name X" or "ram 256MB" / "ram 2GB"',
        )
      else size = {value: spec, source: get('size')!.source}
    }
    const nodeName = get('node_name') ? this.value(get('node_name')!) : undefined
    const locations = get('locations') ? this.locations(get('locations')!) : []
    let loadBalancer: Value<boolean> | undefined
    if (get('load_balancer')) {
      const b = parseBool(this.text(get('load_balancer')!))
      if (b === undefined) this.problem('load_balancer must be true or false', get('load_balancer')!.source)
      else loadBalancer = {value: b, source: get('load_balancer')!.source}
    }
    const hostnames = get('hostnames') ? this.text(get('hostnames')!).split(/\s+/).filter(Boolean) : []
    for (const h of hostnames)
      if (!isValidHostname(h))
        this.problem(
          `hostname "${h}" is not a valid host name`,
          get('hostnames')!.source,
          'use labels of letters, digits and "-", separated by dots',
        )
    return {
      role,
      section: section.name,
      source: section.source,
      nodes,
      nodeName,
      size,
      services,
      params,
      locations,
      loadBalancer,
      hostnames,
    }
  }

  private services(section: MergedSection, role: string, catalog: Catalog): Value<string[]> {
    const v = section.values.get('services')
    const defaults =
      role === 'appserver'
        ? ['appserver']
        : role === 'balancer'
          ? ['balancer']
          : role.startsWith('service:')
            ? [role.slice('service:'.length)]
            : []
    if (!v) {
      for (const name of defaults) {
        if (!catalog.has(name)) {
          const guess = didYouMean(name, catalog.keys())
          this.problem(
            `[${section.name}]: there is no service "${name}"`,
            section.source,
            guess
              ? `did you mean [service:${guess}]?`
              : `available services: ${[...catalog.keys()].join(', ')} (nodeset services)`,
          )
        }
      }
      return {value: defaults.filter((n) => catalog.has(n)), source: section.source}
    }
    const names = this.text(v)
      .split(/[\s,]+/)
      .filter(Boolean)
    for (const name of names) {
      if (!catalog.has(name)) {
        const guess = didYouMean(name, catalog.keys())
        this.problem(
          `unknown service "${name}"`,
          v.source,
          guess ? `did you mean "${guess}"?` : `available: ${[...catalog.keys()].join(', ')} (nodeset services)`,
        )
      }
    }
    return {value: names.filter((n) => catalog.has(n)), source: v.source}
  }

  private locations(v: MergedValue): Location[] {
    const result: Location[] = []
    this.text(v)
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .forEach((line) => {
        const [url, app, ...rest] = line.split(/\s+/)
        if (!app || rest.length > 0 || !/^https?:\/\/[^\s/]+/.test(url)) {
          this.problem(
            `location "${line}" is not "URL APP_NAME"`,
            v.source,
            'one per line, e.g. http://foobar.com/ blog',
          )
          return
        }
        result.push({url, app, source: v.source})
      })
    return result
  }
}

export interface ReadResult {
  nodeset: Nodeset
  catalog: Catalog
}

/** Read and validate a nodeset file; throws DiagnosticsError with every problem found. */
export function readNodeset(file: string, io: ReaderIO = defaultIO()): ReadResult {
  const merged = readMerged(file, io)
  const interpolator = new Interpolator(merged.sections, io.env)
  const reader = new Reader(interpolator, io)
  const root = path.resolve(file)
  const general = reader.general(merged.sections.get('general'), root)
  const {catalog, problems: catalogProblems} = loadCatalog(
    general.servicesDirs.length ? general.servicesDirs : defaultServicesDirs(root),
  )
  const provider = reader.provider(merged.sections.get('provider'), root)
  const roles: RoleSpec[] = []
  for (const [name, section] of merged.sections) {
    reader.noteSecrets(section)
    if (name === 'general' || name === 'provider') continue
    const role = roleOfSection(name)
    if (!role) {
      const guess = didYouMean(name, [
        'general',
        'provider',
        'appserver',
        'balancer',
        ...[...catalog.keys()].map((s) => `service:${s}`),
      ])
      reader.problem(
        `unknown section [${name}]`,
        section.source,
        guess ? `did you mean [${guess}]?` : `sections are: ${KNOWN_SECTIONS.join(', ')}`,
      )
      continue
    }
    roles.push(reader.role(section, role, catalog))
  }
  if (roles.length === 0)
    reader.problem(
      'the nodeset has no roles',
      {file: root, line: 1},
      'add [appserver], [service:NAME], [balancer] or [role:NAME] sections',
    )
  const problems = [...merged.problems, ...interpolator.problems, ...catalogProblems, ...reader.problems]
  if (problems.length > 0) throw new DiagnosticsError(dedupe(problems))
  const nodeset: Nodeset = {
    file: root,
    files: merged.files,
    general,
    provider,
    roles,
    secrets: [...reader.secrets].filter((s) => s.length >= 3),
  }
  return {nodeset, catalog}
}

/** A `services/` folder beside the nodeset file is the user's services directory. */
function defaultServicesDirs(file: string): string[] {
  const dir = path.join(path.dirname(file), 'services')
  return fs.existsSync(dir) ? [dir] : []
}

function dedupe(problems: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>()
  return problems.filter((p) => {
    const key = `${p.source?.file}:${p.source?.line}:${p.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}
