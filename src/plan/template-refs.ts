/**
 * References: what a template reads of other nodes (`{{ip "service:mysql"}}`, `{{output T "KEY"}}`,
 * `{{#each (nodes "appserver")}}`), found in its AST so each can become an edge of the dependency
 * graph; and the world they are read from, with what it does not know yet.
 */
import {type AstNode, exprText, parseTemplate, TemplateError, walk} from './template-syntax.js'

export const FACT_HELPERS = ['ip', 'private_ip', 'hostname'] as const
/** nodeset's helpers: each reads another node (or, without arguments, the current one). */
export const REF_HELPERS = [...FACT_HELPERS, 'fact', 'output', 'nodes'] as const

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

function describe(node: AstNode, name: string): string {
  return `{{${[name, ...(node.params ?? []).map(exprText)].join(' ')}}}`
}

function literalArgs(node: AstNode, name: string, line: number): string[] {
  return (node.params ?? []).map((p) => {
    if (p.type !== 'StringLiteral') {
      throw new TemplateError(
        `${describe(node, name)}: the arguments of ${name} must be quoted strings, e.g. {{${name} "service:mysql"}}`,
        line,
        'quote the role or node name: "appserver", "service:mysql", "app1.example.com"',
      )
    }
    return String(p.value)
  })
}

export function refFromCall(node: AstNode, name: string): TemplateRef | undefined {
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

// Many params share one template text: find the references of each text once (bounded, like the ASTs).
const CACHE_LIMIT = 10_000
const refCache = new Map<string, readonly TemplateRef[]>()

/** Every reference a template makes, in order of appearance. */
export function extractRefs(template: string): TemplateRef[] {
  if (!template.includes('{{')) return []
  const cached = refCache.get(template)
  if (cached) return [...cached]
  const refs = parseRefs(template)
  if (refCache.size >= CACHE_LIMIT) refCache.clear()
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
