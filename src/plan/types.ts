/** Where a value came from: the file that set it (through `extends`) and its line. */
export interface Source {
  file: string
  line: number
}

/** `file:line`, the file relative to the working directory when it is below it. */
export function formatSource(source: Source | undefined): string {
  if (!source) return '<unknown>'
  const cwd = typeof process === 'undefined' ? '' : process.cwd() + '/'
  const file = cwd && source.file.startsWith(cwd) ? source.file.slice(cwd.length) : source.file
  return `${file}:${source.line}`
}

/** A node size as the user wrote it: `id t3.small`, `name t3.small`, `ram 256MB`, or a bare type name. */
export type SizeSpec = {kind: 'id'; value: string} | {kind: 'name'; value: string} | {kind: 'ram'; megabytes: number}

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
