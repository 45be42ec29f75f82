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

/** The reference a call of one of nodeset's helpers makes; a TemplateError when the call is wrong. */
export function refFromCall(node: AstNode, name: string): TemplateRef | undefined {
  return readCall(node, name, true)
}

/** refFromCall's verdict on a call, without making the reference: throws the same TemplateError. */
export function checkRefCall(node: AstNode, name: string): void {
  readCall(node, name, false)
}

function readCall(node: AstNode, name: string, make: boolean): TemplateRef | undefined {
  const line = node.loc?.start.line ?? 1
  // The expression as written is for messages and for the reference: written out only when needed.
  const expression = () => describe(node, name)
  const ref = (kind: TemplateRef['kind'], target: string, key: string, service?: string, all = false) => {
    if (!make) return undefined
    const expr = expression()
    if (service !== undefined) return {kind, target, service, key, all, line, expression: expr}
    return {kind, target, key, all, line, expression: expr}
  }
  const isFactHelper = (FACT_HELPERS as readonly string[]).includes(name)
  if (isFactHelper) {
    // `{{ip}}` with no target reads the current context (the node itself, or the node of an #each).
    if ((node.params ?? []).length === 0) return undefined
    const args = literalArgs(node, name, line)
    if (args.length !== 1)
      throw new TemplateError(`${expression()}: ${name} takes one argument, a role or node name`, line)
    return ref('fact', args[0], name)
  }
  if (name === 'fact') {
    const args = literalArgs(node, name, line)
    if (args.length !== 2)
      throw new TemplateError(`${expression()}: fact takes two arguments: {{fact "ROLE" "KEY"}}`, line)
    return ref('fact', args[0], args[1])
  }
  if (name === 'output') {
    const args = literalArgs(node, name, line)
    if (args.length === 2) return ref('output', args[0], args[1])
    if (args.length === 3) return ref('output', args[0], args[2], args[1])
    throw new TemplateError(
      `${expression()}: output takes a role and a key, and optionally a service: {{output "ROLE" ["SERVICE"] "KEY"}}`,
      line,
    )
  }
  if (name === 'nodes') {
    const args = literalArgs(node, name, line)
    if (args.length !== 1) throw new TemplateError(`${expression()}: nodes takes one argument, a role name`, line)
    return ref('fact', args[0], 'ip', undefined, true)
  }
  return undefined
}

// Many params share one template text: find the references of each text once (bounded, like the ASTs).
const CACHE_LIMIT = 10_000
const refCache = new Map<string, readonly TemplateRef[]>()

/** Every reference a template makes, in order of appearance. */
export function extractRefs(template: string): TemplateRef[] {
  return [...templateRefs(template)]
}

const NO_REFS: readonly TemplateRef[] = Object.freeze([])

/** extractRefs without the copy: the list is shared by every caller of the same text, read it only. */
export function templateRefs(template: string): readonly TemplateRef[] {
  if (!template.includes('{{')) return NO_REFS
  const cached = refCache.get(template)
  if (cached) return cached
  const refs = refsInAst(parseTemplate(template))
  if (refCache.size >= CACHE_LIMIT) refCache.clear()
  refCache.set(template, refs)
  return refs
}

/** The references of a parsed template, in order of appearance. */
export function refsInAst(ast: unknown): TemplateRef[] {
  const refs: TemplateRef[] = []
  const take = (n: AstNode) => {
    if (n.path?.type !== 'PathExpression' || typeof n.path.original !== 'string') return
    const ref = refFromCall(n, n.path.original)
    if (ref) refs.push(ref)
  }
  const body = (ast as AstNode).body
  if (body && body.every(isFlat)) {
    // Text and mustaches of literals and names only (most params): the calls are the mustaches, in order.
    for (const statement of body) if (statement.type === 'MustacheStatement') take(statement)
    return refs
  }
  walk(ast, (n) => {
    if (n.type === 'MustacheStatement' || n.type === 'SubExpression' || n.type === 'BlockStatement') take(n)
  })
  return refs
}

const LEAVES = new Set([
  'PathExpression',
  'StringLiteral',
  'NumberLiteral',
  'BooleanLiteral',
  'NullLiteral',
  'UndefinedLiteral',
])

/** A statement in which walking finds no call but the statement itself. */
function isFlat(statement: AstNode): boolean {
  if (statement.type === 'ContentStatement') return true
  if (statement.type !== 'MustacheStatement' || statement.hash !== undefined) return false
  return LEAVES.has(statement.path?.type ?? '') && (statement.params ?? []).every((p) => LEAVES.has(p.type))
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
