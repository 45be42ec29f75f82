import type {SizeSpec, Source} from '../core/source.js'

export interface Value<T = string> {
  value: T
  source: Source
}

export type ProviderKind = 'ec2' | 'local' | 'static'

export interface Location {
  url: string
  app: string
  source: Source
}

export interface RoleSpec {
  /** `appserver`, `service:mysql`, `balancer`, or NAME for a `[role:NAME]` section. */
  role: string
  section: string
  source: Source
  nodes: Value<number>
  nodeName?: Value<string>
  size?: Value<SizeSpec>
  services: Value<string[]>
  /** params[service][param] */
  params: Record<string, Record<string, Value<string>>>
  locations: Location[]
  loadBalancer?: Value<boolean>
  hostnames: string[]
  /** `site = NAME`: the `[site:NAME]` its nodes run in (absent in a file without sites). */
  site?: Value<string>
}

export interface ProviderSpec {
  kind: ProviderKind
  /** Every provider key after `name` lookup in ~/.nodeset.conf, secrets included (never print this). */
  settings: Record<string, Value<string>>
  source: Source
}

/**
 * A `[site:NAME]`: one cloud or data centre of a deployment that spans several, with its own provider,
 * its own config server (its nodes reach only that one) and the broker through which the sites' servers
 * share what their own nodes report.
 */
export interface SiteSpec {
  name: string
  source: Source
  provider: ProviderSpec
  /** `embedded` (the CLI runs it) or the URL of a standalone config server. */
  configServer: Value<string>
  /** `amqp(s)://user:password@host:port/vhost`: a secret (its password), never printed whole. */
  broker?: Value<string>
}

export interface GeneralSpec {
  name: string
  baseDomain?: string
  setEtcHosts: boolean
  /** `embedded` (the CLI runs it) or the URL of a standalone config server. */
  configServer: string
  bootTimeoutSec: number
  servicesDirs: string[]
}

export interface Nodeset {
  file: string
  files: string[]
  general: GeneralSpec
  /** With sites: the first site's provider (each site has its own; see `sites`). */
  provider: ProviderSpec
  roles: RoleSpec[]
  /** `[site:NAME]` sections in file order; absent or empty: one site, as a file without sites has always been. */
  sites?: SiteSpec[]
  /** Values that must never be printed: provider secrets, secret_file contents, *password* / *secret* / *token* keys. */
  secrets: string[]
}
