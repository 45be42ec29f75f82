/**
 * Resolving one service's params: constants as they are, inputs from the registration, templates
 * rendered with the plan's `renderTemplate` once every value they name is known. A template that
 * handlebars cannot render (an unknown helper, a partial, `{{#each}}` without its argument) is a
 * failure with its reason, never an exception: `renderProblem` finds it at registration, and a
 * state registered before that check gets the same reason at resolution. Pure: no I/O, no clock.
 */
import {
  extractRefs,
  MissingValueError,
  missingValues,
  parseTemplate,
  renderTemplate,
  type TemplateRef,
  type World,
  type WorldNode,
} from '../plan/template.js'
import type {ServiceSpec, Waiting} from './protocol.js'

/** A param that cannot be rendered, and why. */
export interface RenderFailure {
  service: string
  param: string
  message: string
}

export interface ResolvedService {
  /** Every param has its value (nothing waits, nothing failed). */
  complete: boolean
  params: Record<string, string>
  waiting: Waiting[]
  /** Params whose template cannot be rendered: the service cannot start until it is registered again. */
  failed: RenderFailure[]
}

interface AstStatement {
  type: string
  path?: {type: string; original?: unknown}
  params?: Array<{type: string}>
  hash?: unknown
  [key: string]: unknown
}

/** A template whose output depends only on the nodes it names (no `{{name}}`, `{{#each}}`, …) renders the same for everyone. */
const REF_HELPERS = new Set(['ip', 'private_ip', 'hostname', 'fact', 'output'])

function isContextFree(ast: {body: AstStatement[]}): boolean {
  return ast.body.every((statement) => {
    if (statement.type === 'ContentStatement' || statement.type === 'CommentStatement') return true
    if (statement.type !== 'MustacheStatement' || statement.hash) return false
    const name = statement.path?.type === 'PathExpression' ? statement.path.original : undefined
    const params = statement.params ?? []
    return (
      typeof name === 'string' &&
      REF_HELPERS.has(name) &&
      params.length > 0 &&
      params.every((p) => p.type === 'StringLiteral')
    )
  })
}

/** Helpers a template may not call: `log` writes its arguments (secrets among them) to the server's stdout. */
const REFUSED_HELPERS = new Set(['log'])

function refusedHelper(ast: unknown): string | undefined {
  let found: string | undefined
  const visit = (node: unknown): void => {
    if (found || node === null || typeof node !== 'object') return
    if (Array.isArray(node)) return node.forEach(visit)
    const n = node as AstStatement
    const name = n.path?.type === 'PathExpression' ? n.path.original : undefined
    if (
      (n.type === 'MustacheStatement' || n.type === 'SubExpression' || n.type === 'BlockStatement') &&
      typeof name === 'string' &&
      REFUSED_HELPERS.has(name)
    )
      found = name
    for (const [key, value] of Object.entries(n)) if (key !== 'loc') visit(value)
  }
  visit(ast)
  return found
}

interface TemplateInfo {
  refs: TemplateRef[]
  contextFree: boolean
  /** Why it cannot be rendered whatever the values, once checked (null: it can). */
  problem?: string | null
}

/** Parsed templates, shared by every registration (templates repeat across instances). */
const templateInfo = new Map<string, TemplateInfo>()

export function infoOf(template: string): TemplateInfo {
  let info = templateInfo.get(template)
  if (!info) {
    if (!template.includes('{{')) info = {refs: [], contextFree: true, problem: null}
    else {
      const ast = parseTemplate(template) as {body: AstStatement[]}
      const refused = refusedHelper(ast)
      info = {
        refs: extractRefs(template),
        contextFree: isContextFree(ast),
        ...(refused ? {problem: `the ${refused} helper is not available in nodeset templates`} : {}),
      }
    }
    if (templateInfo.size > 50_000) templateInfo.clear()
    templateInfo.set(template, info)
  }
  return info
}

/** An error of handlebars (or of a helper) as one line, without a stack. */
function reason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  const line = text.split('\n').pop() ?? ''
  return line.length > 300 ? `${line.slice(0, 300)}…` : line
}

const PLACEHOLDER = 'x'

/**
 * Why the template cannot be rendered whatever the values turn out to be, or undefined: it is rendered
 * once over a world where every node it names has every value it asks for. Parse errors and references
 * are the plan's checks (`analyze`); this finds what only rendering finds.
 */
export function renderProblem(template: string): string | undefined {
  const info = infoOf(template)
  if (info.problem !== undefined) return info.problem ?? undefined
  const nodes = new Map<string, WorldNode & {provides: Record<string, string[]>}>()
  for (const ref of info.refs) {
    let node = nodes.get(ref.target)
    if (!node) {
      const facts = {ip: PLACEHOLDER, private_ip: PLACEHOLDER, hostname: PLACEHOLDER}
      node = {name: ref.target, role: ref.target, index: 1, facts, outputs: {}, provides: {}}
      nodes.set(ref.target, node)
    }
    if (ref.kind === 'fact') node.facts[ref.key] = PLACEHOLDER
    else {
      const service = ref.service ?? 'service'
      ;(node.outputs[service] ??= {})[ref.key] = PLACEHOLDER
      ;(node.provides[service] ??= []).push(ref.key)
    }
  }
  const self = {ip: PLACEHOLDER, hostname: PLACEHOLDER}
  const vars = {...self, name: PLACEHOLDER, role: PLACEHOLDER, index: 1, n: 1, facts: self, outputs: {}}
  try {
    renderTemplate(template, {nodes: [...nodes.values()]}, vars)
    info.problem = null
  } catch (error) {
    // A value that is missing here depends on the values: resolution will tell.
    info.problem = error instanceof MissingValueError ? null : reason(error)
  }
  return info.problem ?? undefined
}

const RENDER_MEMO_LIMIT = 20_000
const RENDER_MEMO_KEY_LIMIT = 64 * 1024

/** A number for each frozen world node, in the order first seen: its identity in a memo key. */
const nodeSerials = new WeakMap<WorldNode, number>()
let nextSerial = 1

/**
 * A node that can no longer change: it, its facts, its outputs, each service's outputs and what its
 * services provide are frozen (the lists provided are the registration's service specs, never changed).
 */
function isSnapshot(node: WorldNode): boolean {
  if (!Object.isFrozen(node) || !Object.isFrozen(node.facts) || !Object.isFrozen(node.outputs)) return false
  if (node.provides !== undefined && !Object.isFrozen(node.provides)) return false
  for (const service in node.outputs) if (!Object.isFrozen(node.outputs[service])) return false
  return true
}

/**
 * What identifies the values a world holds. A snapshot (the registration's world nodes: a change
 * makes a new one) is named by its serial, so the key costs a few digits per node; a node that could
 * still change is named by its JSON. The key holds no U+0002 (JSON escapes it), so the template before
 * it cannot run into it.
 */
function worldKey(world: World): string {
  let key = ''
  for (const node of world.nodes) {
    if (!isSnapshot(node)) {
      key += `\u0001${JSON.stringify(node)}`
      continue
    }
    let serial = nodeSerials.get(node)
    if (serial === undefined) nodeSerials.set(node, (serial = nextSerial++))
    key += `\u0000${serial}`
  }
  return key
}

/** Renders templates over a world; a context-free template's value is remembered per (template, nodes named). */
export class Renderer {
  private readonly memo = new Map<string, string>()

  render(template: string, world: World, vars: () => Record<string, unknown>): string {
    if (!infoOf(template).contextFree) return renderTemplate(template, world, vars())
    const key = `${template}\u0002${worldKey(world)}`
    if (key.length > RENDER_MEMO_KEY_LIMIT) return renderTemplate(template, world, vars())
    let value = this.memo.get(key)
    if (value === undefined) {
      value = renderTemplate(template, world, vars())
      if (this.memo.size >= RENDER_MEMO_LIMIT) this.memo.clear()
      this.memo.set(key, value)
    }
    return value
  }
}

/** What resolving a service needs of its registration. */
export interface ResolveContext {
  /** The registration's input for this param, if any. */
  input(param: string): string | undefined
  /** Only the nodes the instance's templates name (built on first use). */
  world(): World
  /** Render one template for this instance. */
  render(template: string, world: World): string
}

/** One service's params: constants, inputs, and templates rendered once all they name is known. */
export function resolveParams(instanceId: string, service: ServiceSpec, ctx: ResolveContext): ResolvedService {
  const params: Record<string, string> = {}
  const waiting: Waiting[] = []
  const failed: RenderFailure[] = []
  let world: World | undefined
  for (const [param, spec] of Object.entries(service.params)) {
    if ('value' in spec) {
      params[param] = spec.value
    } else if ('input' in spec) {
      const value = ctx.input(param)
      if (value === undefined)
        waiting.push({service: service.name, param, kind: 'input', instance: instanceId, key: param})
      else params[param] = value
    } else {
      let info: TemplateInfo
      try {
        info = infoOf(spec.template)
      } catch (error) {
        failed.push({service: service.name, param, message: reason(error)})
        continue
      }
      if (info.problem) {
        failed.push({service: service.name, param, message: info.problem})
        continue
      }
      world ??= ctx.world()
      const missing = missingValues(info.refs, world)
      if (missing.length > 0) {
        for (const m of missing)
          waiting.push({
            service: service.name,
            param,
            kind: m.kind,
            instance: m.node,
            ...(m.service ? {outputService: m.service} : {}),
            key: m.key,
          })
        continue
      }
      try {
        params[param] = ctx.render(spec.template, world)
      } catch (error) {
        failed.push({service: service.name, param, message: reason(error)})
      }
    }
  }
  return {complete: waiting.length === 0 && failed.length === 0, params, waiting, failed}
}
