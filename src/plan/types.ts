import type {Source, SizeSpec} from '../core/source.js'
import type {ProviderSpec} from '../nodeset/types.js'

/**
 * A parameter of one service on one node: a constant, a handlebars template that may refer to other
 * nodes, or an input given when the deployment is launched.
 */
export interface ParamPlan {
  name: string
  /** The raw value; handlebars `{{…}}` is rendered at node time, once what it refers to is known. Empty for an input. */
  value: string
  source?: Source
  /** Never printed: passwords, secrets, tokens. */
  secret: boolean
  /** Given at launch (`--set`, `--values`, or asked), passed to the config server as an input: see PlanInput. */
  input?: boolean
}

/**
 * A param the file leaves to launch time (`SERVICE.PARAM = {{input}}`, or `"input": true` in service.json
 * and not set in the file): one value for every node of the role.
 */
export interface PlanInput {
  /** The role's section as the file writes it (`service:mysql`, `appserver`, `role:worker`). */
  section: string
  role: string
  service: string
  param: string
  /** `SECTION.SERVICE.PARAM`, as `--set` names it. */
  key: string
  description: string
  secret: boolean
  /** The nodes that get the value. */
  nodes: string[]
  /** Where the file (or service.json) leaves it to launch time. */
  source?: Source
}

/** Launch-time values for the config server: inputs[node][service][param]. */
export type Inputs = Record<string, Record<string, Record<string, string>>>

/** One (node, service) pair: the vertex of the dependency graph and the unit of setup. */
export interface StepPlan {
  node: string
  service: string
  params: ParamPlan[]
  /** Output keys this service writes to $NODESET_OUTPUT. */
  provides: string[]
  /** Services on the same node that must finish first (service metadata `after`). */
  after: string[]
}

export interface NodePlan {
  name: string
  /** `appserver`, `service:mysql`, `balancer`, or any other role section. */
  role: string
  /** 1-based position in its role: `{{n}}` in node_name. */
  index: number
  size?: SizeSpec
  services: string[]
  /** The `[site:NAME]` it runs in; absent when the file has no sites. */
  site?: string
}

/** A reference from a step's param (or template) to another node's fact or another step's output. */
export interface Reference {
  from: {node: string; service: string; param?: string}
  kind: 'fact' | 'output'
  to: {node: string; service?: string}
  key: string
  source?: Source
  /** The expression as written, e.g. `{{ip "service:mysql"}}`. */
  expression: string
}

/**
 * One site of a deployment that spans several: its provider (as `[provider]` gives one today, secrets
 * included: never print `provider.settings` whole), its config server and its broker URL (whose password
 * is a secret: print it through `brokerShown`).
 */
export interface SitePlan {
  name: string
  source: Source
  provider: ProviderSpec
  /** `embedded` or the URL of a standalone config server. */
  configServer: 'embedded' | string
  broker?: string
}

export interface Plan {
  deployment: string
  baseDomain?: string
  setEtcHosts: boolean
  nodes: NodePlan[]
  steps: StepPlan[]
  references: Reference[]
  /** The sites, in file order; absent for a file without sites (one site, as always). */
  sites?: SitePlan[]
}
