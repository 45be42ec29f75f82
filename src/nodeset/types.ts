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
}

export interface ProviderSpec {
  kind: ProviderKind
  /** Every provider key after `name` lookup in ~/.nodeset.conf, secrets included (never print this). */
  settings: Record<string, Value<string>>
  source: Source
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
  provider: ProviderSpec
  roles: RoleSpec[]
  /** Values that must never be printed: provider secrets, secret_file contents, *password* / *secret* / *token* keys. */
  secrets: string[]
}
