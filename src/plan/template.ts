/**
 * Node-time interpolation: handlebars expressions that refer to other nodes' facts and outputs.
 * The same syntax serves config values and template files. References are found by walking the
 * handlebars AST (never by regex), so every one can become an edge of the dependency graph.
 *
 *   {{ip "service:mysql"}}                 fact `ip` of the first node of a role (or of a node by name)
 *   {{private_ip T}} {{hostname T}}        other built-in facts
 *   {{fact T "sshd_port"}}                 any fact a node reported
 *   {{output T "password"}}                an output of the (unique) service of T that provides it
 *   {{output T "mysql" "password"}}        an output of a named service of T
 *   {{#each (nodes "appserver")}}{{name}} {{ip}}{{/each}}   every node of a role, with its facts
 */
import Handlebars from 'handlebars'

export const FACT_HELPERS = ['ip', 'private_ip', 'hostname'] as const

export interface TemplateRef {
  kind: 'fact' | 'output'
  /** A role name (`appserver`, `service:mysql`) or a node name. */
  target: string
  key: string
  service?: string
  /** `nodes T` refers to every node of T; the others to the first one. */
  all: boolean
  /** 1-based line within the template. */
  line: number
  expression: string
}

export class TemplateError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message)
  }
}

interface AstNode {
  type: string
  loc?: {start: {line: number; column: number}}
  path?: {type: string; original?: unknown}
  params?: AstNode[]
  value?: unknown
  original?: unknown
  [k: string]: unknown
}

function describe(node: AstNode, name: string): string {
  const args = (node.params ?? []).map((p) =>
    p.type === 'StringLiteral' ? JSON.stringify(p.value) : String(p.original ?? p.type),
  )
  return `{{${[name, ...args].join(' ')}}}`
}

function literalArgs(node: AstNode, name: string, line: number): string[] {
  return (node.params ?? []).map((p) => {
    if (p.type !== 'StringLiteral') {
      throw new TemplateError(
        `${describe(node, name)}: the arguments of ${name} must be quoted strings, e.g. {{${name} "service:mysql"}}`,
        line,
      )
    }
    return String(p.value)
  })
}

function refFromCall(node: AstNode, name: string): TemplateRef | undefined {
  const line = node.loc?.start.line ?? 1
  const expression = describe(node, name)
  const isFactHelper = (FACT_HELPERS as readonly string[]).includes(name)
  if (isFactHelper) {
    // `{{ip}}` with no target reads the current context (the node itself, or the node of an #each).
    if ((node.params ?? []).length === 0) return undefined
    const args = literalArgs(node, name, line)
    if (args.length !== 1)
      throw new TemplateError(`${expression}: ${name} takes one argument, a role or node name`, line)
    return {kind: 'fact', target: args[0], key: name, all: false, line, expression}
  }
  if (name === 'fact') {
    const args = literalArgs(node, name, line)
    if (args.length !== 2)
      throw new TemplateError(`${expression}: fact takes two arguments: {{fact "ROLE" "KEY"}}`, line)
    return {kind: 'fact', target: args[0], key: args[1], all: false, line, expression}
  }
  if (name === 'output') {
    const args = literalArgs(node, name, line)
    if (args.length === 2) return {kind: 'output', target: args[0], key: args[1], all: false, line, expression}
    if (args.length === 3)
      return {kind: 'output', target: args[0], service: args[1], key: args[2], all: false, line, expression}
    throw new TemplateError(
      `${expression}: output takes a role and a key, and optionally a service: {{output "ROLE" ["SERVICE"] "KEY"}}`,
      line,
    )
  }
  if (name === 'nodes') {
    const args = literalArgs(node, name, line)
    if (args.length !== 1) throw new TemplateError(`${expression}: nodes takes one argument, a role name`, line)
    return {kind: 'fact', target: args[0], key: 'ip', all: true, line, expression}
  }
  return undefined
}

function walk(node: unknown, visit: (n: AstNode) => void): void {
  if (Array.isArray(node)) {
    for (const child of node) walk(child, visit)
    return
  }
  if (node === null || typeof node !== 'object') return
  const n = node as AstNode
  if (typeof n.type === 'string') visit(n)
  for (const [key, value] of Object.entries(n)) {
    if (key === 'loc') continue
    if (value && typeof value === 'object') walk(value, visit)
  }
}

/** Parse a template; a syntax error becomes a TemplateError with the template's line. */
export function parseTemplate(template: string): unknown {
  try {
    return Handlebars.parse(template)
  } catch (error) {
    const message = (error as Error).message
    const line = Number(/line (\d+)/.exec(message)?.[1] ?? 1)
    throw new TemplateError(`handlebars syntax error: ${message.split('\n').pop()}`, line)
  }
}

// Many params share one template text (service defaults, `{{output "db" "port"}}` on every app):
// parse each text once. Bounded so a long-running config server does not grow without limit.
const refCache = new Map<string, readonly TemplateRef[]>()
const REF_CACHE_LIMIT = 10_000

/** Every reference a template makes, in order of appearance. */
export function extractRefs(template: string): TemplateRef[] {
  if (!template.includes('{{')) return []
  const cached = refCache.get(template)
  if (cached) return [...cached]
  const refs = parseRefs(template)
  if (refCache.size >= REF_CACHE_LIMIT) refCache.clear()
  refCache.set(template, refs)
  return [...refs]
}

function parseRefs(template: string): TemplateRef[] {
  const ast = parseTemplate(template)
  const refs: TemplateRef[] = []
  walk(ast, (n) => {
    if (n.type !== 'MustacheStatement' && n.type !== 'SubExpression' && n.type !== 'BlockStatement') return
    if (n.path?.type !== 'PathExpression' || typeof n.path.original !== 'string') return
    const ref = refFromCall(n, n.path.original)
    if (ref) refs.push(ref)
  })
  return refs
}

/** What rendering can see of the deployment: every node with the facts and outputs known so far. */
export interface WorldNode {
  name: string
  role: string
  index: number
  facts: Record<string, unknown>
  /** outputs[service][key] */
  outputs: Record<string, Record<string, string>>
  /** Output keys each of its services provides (to find the service of a two-argument `output`). */
  provides?: Record<string, string[]>
}

export interface World {
  nodes: WorldNode[]
}

/** The nodes a target names: every node of a role (by index), or the node of that name. */
export function targetNodes(world: World, target: string): WorldNode[] {
  const byRole = world.nodes.filter((n) => n.role === target).sort((a, b) => a.index - b.index)
  if (byRole.length > 0) return byRole
  return world.nodes.filter((n) => n.name === target)
}

/** The service of `node` that provides `key`, for a two-argument output reference. */
export function serviceProviding(node: WorldNode, key: string): string | undefined {
  const candidates = Object.entries(node.provides ?? {}).filter(([, keys]) => keys.includes(key))
  if (candidates.length === 1) return candidates[0][0]
  const reported = Object.entries(node.outputs).filter(([, outputs]) => key in outputs)
  return reported.length === 1 ? reported[0][0] : candidates[0]?.[0]
}

/** Describes a value that is not known yet. */
export interface Missing {
  kind: 'fact' | 'output'
  node: string
  service?: string
  key: string
  expression: string
}

/** What the refs still wait for in this world; empty when the template can be rendered. */
export function missingValues(refs: readonly TemplateRef[], world: World): Missing[] {
  const missing: Missing[] = []
  for (const ref of refs) {
    const nodes = targetNodes(world, ref.target)
    const wanted = ref.all ? nodes : nodes.slice(0, 1)
    if (wanted.length === 0) {
      missing.push({kind: ref.kind, node: ref.target, service: ref.service, key: ref.key, expression: ref.expression})
      continue
    }
    for (const node of wanted) {
      if (ref.kind === 'fact') {
        if (node.facts[ref.key] === undefined)
          missing.push({kind: 'fact', node: node.name, key: ref.key, expression: ref.expression})
      } else {
        const service = ref.service ?? serviceProviding(node, ref.key)
        if (service === undefined || node.outputs[service]?.[ref.key] === undefined) {
          missing.push({kind: 'output', node: node.name, service, key: ref.key, expression: ref.expression})
        }
      }
    }
  }
  return missing
}

export class MissingValueError extends Error {}

function nodeView(node: WorldNode): Record<string, unknown> {
  return {
    ...node.facts,
    name: node.name,
    role: node.role,
    index: node.index,
    n: node.index,
    facts: node.facts,
    outputs: node.outputs,
  }
}

/** A handlebars instance with nodeset's helpers bound to a world. Output is never HTML-escaped. */
function environment(world: World): typeof Handlebars {
  const hbs = Handlebars.create()
  const first = (target: string): WorldNode => {
    const node = targetNodes(world, target)[0]
    if (!node) throw new MissingValueError(`no node for "${target}"`)
    return node
  }
  const factOf = (node: WorldNode, key: string): unknown => {
    const value = node.facts[key]
    if (value === undefined) throw new MissingValueError(`fact ${key} of ${node.name} is not known yet`)
    return value
  }
  for (const name of FACT_HELPERS) {
    hbs.registerHelper(name, function (this: Record<string, unknown>, ...args: unknown[]) {
      const params = args.slice(0, -1)
      if (params.length === 0) return this?.[name] ?? ''
      return factOf(first(String(params[0])), name)
    })
  }
  hbs.registerHelper('fact', (target: string, key: string) => factOf(first(target), key))
  hbs.registerHelper('output', (...args: unknown[]) => {
    const params = args.slice(0, -1).map(String)
    const node = first(params[0])
    const key = params[params.length - 1]
    const service = params.length === 3 ? params[1] : serviceProviding(node, key)
    const value = service === undefined ? undefined : node.outputs[service]?.[key]
    if (value === undefined) throw new MissingValueError(`output ${key} of ${node.name} is not known yet`)
    return value
  })
  hbs.registerHelper('nodes', (target: string) => targetNodes(world, target).map(nodeView))
  return hbs
}

/**
 * Render a template in a world, with `vars` as the root context (name, n, role, params, general, …).
 * Throws MissingValueError when a referenced value is not known yet.
 */
export function renderTemplate(
  template: string,
  world: World,
  vars: Record<string, unknown> = {},
  partials: Record<string, string> = {},
): string {
  if (!template.includes('{{')) return template
  const hbs = environment(world)
  for (const [name, text] of Object.entries(partials)) hbs.registerPartial(name, text)
  return hbs.compile(template, {noEscape: true, strict: false})(vars)
}
