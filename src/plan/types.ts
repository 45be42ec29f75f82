import type {Source, SizeSpec} from '../core/source.js'

/** A parameter of one service on one node: a constant or a handlebars template that may refer to other nodes. */
export interface ParamPlan {
  name: string
  /** The raw value; handlebars `{{…}}` is rendered at node time, once what it refers to is known. */
  value: string
  source?: Source
  /** Never printed: passwords, secrets, tokens. */
  secret: boolean
}

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

export interface Plan {
  deployment: string
  baseDomain?: string
  setEtcHosts: boolean
  nodes: NodePlan[]
  steps: StepPlan[]
  references: Reference[]
}
