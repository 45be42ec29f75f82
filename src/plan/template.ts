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
 *
 * Templates are checked before they run (checkTemplate): every helper, variable and partial must
 * exist in the scope the template is rendered in (scopes below), and blocks get what they need.
 * Rendering runs the same check against the variables it is given, so an unknown name throws
 * instead of printing an empty string; only `facts.KEY` is open (any fact a node may report).
 *
 * This module renders; the rest live beside it: template-syntax.ts (parsing, syntax errors),
 * template-refs.ts (references and the world they read), template-scope.ts (what names mean where),
 * template-check.ts (the strict check). Its exports are the whole template API.
 */
import {checkTemplate} from './template-check.js'
import {evaluatePlain, type Helper} from './template-eval.js'
import {FACT_HELPERS, serviceProviding, targetNodes, type World, type WorldNode} from './template-refs.js'
import {scanPlain} from './template-scan.js'
import {shapeOfVars} from './template-scope.js'
import {handlebars, TemplateError} from './template-syntax.js'

export {
  checkedTemplate,
  checkTemplate,
  type CheckOptions,
  type PartialSource,
  type TemplateProblem,
} from './template-check.js'
export {
  extractRefs,
  FACT_HELPERS,
  type Missing,
  missingValues,
  REF_HELPERS,
  refsInAst,
  serviceProviding,
  targetNodes,
  type TemplateRef,
  templateRefs,
  type World,
  type WorldNode,
} from './template-refs.js'
export {nodeNameScope, paramScope, scriptScope, type Shape, shapeOfVars} from './template-scope.js'
export {parseTemplate, rememberParsed, TemplateError} from './template-syntax.js'

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

/** nodeset's helpers bound to a world. */
function helpersFor(world: World): Record<string, Helper> {
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
  const helpers: Record<string, Helper> = {}
  for (const name of FACT_HELPERS) {
    helpers[name] = function (this: unknown, ...args: unknown[]) {
      const params = args.slice(0, -1)
      if (params.length === 0) return (this as Record<string, unknown> | undefined)?.[name] ?? ''
      return factOf(first(String(params[0])), name)
    }
  }
  helpers.fact = (target: unknown, key: unknown) => factOf(first(target as string), key as string)
  helpers.output = (...args: unknown[]) => {
    const params = args.slice(0, -1).map(String)
    const node = first(params[0])
    const key = params[params.length - 1]
    const service = params.length === 3 ? params[1] : serviceProviding(node, key)
    const value = service === undefined ? undefined : node.outputs[service]?.[key]
    if (value === undefined) throw new MissingValueError(`output ${key} of ${node.name} is not known yet`)
    return value
  }
  helpers.nodes = (target: unknown) => targetNodes(world, target as string).map(nodeView)
  return helpers
}

/**
 * Render a template in a world, with `vars` as the root context (name, n, role, params, general, …).
 * Strict: the template is first checked against `vars` (checkTemplate), and an unknown helper,
 * variable or partial throws a TemplateError instead of printing nothing; `facts.KEY` of a fact
 * the node did not report is the one name that renders empty. Throws MissingValueError when a
 * referenced value is not known yet.
 */
export function renderTemplate(
  template: string,
  world: World,
  vars: Record<string, unknown> = {},
  partials: Record<string, string> = {},
): string {
  if (!template.includes('{{')) return template
  const problems = checkTemplate(template, {
    root: shapeOfVars(vars),
    partials: Object.fromEntries(Object.entries(partials).map(([name, text]) => [name, {text}])),
  })
  if (problems.length > 0) {
    const [p] = problems
    throw new TemplateError(`${p.message}${p.hint ? ` (${p.hint})` : ''}`, p.line, p.hint)
  }
  // Text and plain mustaches (node names, most params) are rendered without loading handlebars.
  const scanned = scanPlain(template)
  const rendered = scanned && evaluatePlain(scanned, vars, helpersFor(world))
  return rendered ?? renderWithHandlebars(template, world, vars, partials)
}

type Compiled = (vars: Record<string, unknown>, options: {helpers: Record<string, Helper>}) => string

/**
 * Each distinct template (with its partials) compiled once, in its own handlebars environment
 * holding the partials; the helpers, bound to a world, come with each call. Keyed by the texts
 * themselves, so an entry cannot outlive what it was compiled from.
 */
const compiled = new Map<string, Compiled>()
const COMPILED_MAX = 512

function compiledTemplate(template: string, partials: Record<string, string>): Compiled {
  const names = Object.keys(partials).sort()
  const key = JSON.stringify([template, ...names.flatMap((name) => [name, partials[name]])])
  let render = compiled.get(key)
  if (!render) {
    const hbs = handlebars().create()
    for (const name of names) hbs.registerPartial(name, partials[name])
    render = hbs.compile(template, {noEscape: true, strict: false}) as unknown as Compiled
    if (compiled.size >= COMPILED_MAX) compiled.clear()
    compiled.set(key, render)
  }
  return render
}

/** Handlebars' rendering with nodeset's helpers, unchecked: what renderTemplate gives when it cannot evaluate a template itself. */
export function renderWithHandlebars(
  template: string,
  world: World,
  vars: Record<string, unknown> = {},
  partials: Record<string, string> = {},
): string {
  return compiledTemplate(template, partials)(vars, {helpers: helpersFor(world)})
}
