/**
 * The checks made before anything is created, shared by `nodeset plan` and the config server's
 * registration: every reference names something that exists and provides what is asked, and no
 * (node, service) pair waits on itself through a chain of outputs. Every template is checked in the
 * scope it is rendered in (template.ts): a param value sees the node itself, a service's template
 * also its params, general, locations and hostnames; what passes here renders at node time.
 */
import {type Diagnostic, didYouMean} from '../core/diagnostics.js'
import {type Edge, findCyclesNumbered} from './graph.js'
import {
  checkedTemplate,
  checkTemplate,
  paramScope,
  type PartialSource,
  refsInAst,
  scriptScope,
  TemplateError,
  type TemplateProblem,
  type TemplateRef,
  templateRefs,
} from './template.js'
import {formatSource, type Source} from '../core/source.js'
import type {Reference} from './types.js'

export interface CheckParam {
  name: string
  value: string
  source?: Source
}

export interface CheckService {
  name: string
  params: CheckParam[]
  provides: string[]
  after: string[]
  /** The service's template body, when references in it count too (setup scripts, balancer config), and its partials. */
  body?: {text: string; file: string; partials?: Record<string, {text: string; file: string}>}
}

export interface CheckInstance {
  id: string
  role: string
  index: number
  services: CheckService[]
}

export interface EdgeLabel {
  kind: 'output' | 'after'
  key?: string
  expression?: string
  source?: Source
}

export interface Analysis {
  references: Reference[]
  /** Edges between (node, service) vertices, named `node/service`. */
  edges: Edge<EdgeLabel>[]
  vertices: string[]
  problems: Diagnostic[]
}

export const vertexName = (node: string, service: string): string => `${node}/${service}`

function sourceAt(base: Source | undefined, templateLine: number): Source | undefined {
  return base ? {file: base.file, line: base.line + templateLine - 1} : undefined
}

/** An instance with the numbers of its services' vertices (in the order of its services). */
interface NumberedInstance {
  instance: CheckInstance
  vertices: number[]
}

/** Where one template text is read: whose it is, where it was written, what its check found. */
interface TextSite {
  instance: NumberedInstance
  service: CheckService
  from: number
  param?: string
  source?: Source
}

/** Resolve every reference of every param and template body, and check the graph they make. */
export function analyze(instances: CheckInstance[]): Analysis {
  const problems: Diagnostic[] = []
  const references: Reference[] = []
  const edges: Edge<EdgeLabel>[] = []
  // The graph by numbers, as it is made: each vertex numbered when first named, each edge's ends.
  const vertices: string[] = []
  const numbers = new Map<string, number>()
  const names: string[] = []
  const edgeFrom: number[] = []
  const edgeTo: number[] = []
  const numberedInstances = instances.map((instance): NumberedInstance => {
    const numbered = instance.services.map((service) => {
      const name = vertexName(instance.id, service.name)
      vertices.push(name)
      let n = numbers.get(name)
      if (n === undefined) {
        numbers.set(name, (n = names.length))
        names.push(name)
      }
      return n
    })
    return {instance, vertices: numbered}
  })
  const byName = new Map(numberedInstances.map((i) => [i.instance.id, i]))
  const byRole = new Map<string, NumberedInstance[]>()
  for (const i of numberedInstances) {
    const list = byRole.get(i.instance.role)
    if (list) list.push(i)
    else byRole.set(i.instance.role, [i])
  }
  for (const list of byRole.values()) list.sort((a, b) => a.instance.index - b.instance.index)
  // What a reference's target names, in one lookup: a role's nodes (by index), else the node of that name.
  const targets = new Map<string, NumberedInstance[]>(byRole)
  for (const [name, node] of byName) if (!targets.has(name)) targets.set(name, [node])

  const addEdge = (from: number, to: number, edge: Edge<EdgeLabel>) => {
    edges.push(edge)
    edgeFrom.push(from)
    edgeTo.push(to)
  }

  const readText = (site: TextSite, found: readonly TemplateProblem[], refs: () => readonly TemplateRef[]) => {
    const {instance, service, param, source} = site
    const what = () => (param ? `param ${param} of ${service.name}` : `template of ${service.name}`)
    for (const p of found) {
      problems.push({
        message: `${what()}: ${p.message}`,
        source: p.file ? {file: p.file, line: p.line} : sourceAt(source, p.line),
        hint: p.hint ?? 'fix the {{…}} expression; see "Node-time interpolation" in the README',
      })
    }
    if (found.length > 0) return
    let read: readonly TemplateRef[]
    try {
      read = refs()
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error
      problems.push({
        message: `${what()}: ${error.message}`,
        source: sourceAt(source, error.line),
        hint: error.hint ?? 'fix the {{…}} expression; see "Node-time interpolation" in the README',
      })
      return
    }
    for (const ref of read) {
      const at = sourceAt(source, ref.line)
      const named = targets.get(ref.target)
      if (named === undefined) {
        const guess = didYouMean(ref.target, [...byRole.keys(), ...byName.keys()])
        problems.push({
          message: `${ref.expression} refers to "${ref.target}", but no role or node has that name`,
          source: at,
          hint: guess ? `did you mean "${guess}"?` : `roles are: ${[...byRole.keys()].join(', ')}`,
        })
        continue
      }
      const count = ref.all ? named.length : 1
      for (let t = 0; t < count; t++) {
        const target = named[t]
        const resolved = resolveRef(ref, target.instance, at, problems)
        if (resolved === UNRESOLVED) continue
        const to = resolved === FACT ? undefined : target.instance.services[resolved].name
        references.push({
          from: {node: instance.instance.id, service: service.name, param},
          kind: ref.kind,
          to: {node: target.instance.id, service: to},
          key: ref.key,
          source: at,
          expression: ref.expression,
        })
        if (ref.kind === 'output' && to) {
          addEdge(site.from, target.vertices[resolved], {
            from: names[site.from],
            to: vertexName(target.instance.id, to),
            label: {kind: 'output', key: ref.key, expression: ref.expression, source: at},
          })
        }
      }
    }
  }

  for (const numbered of numberedInstances) {
    const {instance} = numbered
    instance.services.forEach((service, s) => {
      const from = numbered.vertices[s]
      for (const p of service.params) {
        const site = {instance: numbered, service, from, param: p.name, source: p.source}
        const checked = checkParam(p.value)
        readText(site, checked.problems, () => {
          if (checked.refError) throw checked.refError
          return checked.refs
        })
      }
      if (service.body) {
        const {text, file, partials = {}} = service.body
        const body = {instance: numbered, service, from, source: {file, line: 1}}
        readText(body, checkBody(service, service.body), () => templateRefs(text))
        for (const partial of Object.values(partials)) {
          const site = {instance: numbered, service, from, source: {file: partial.file, line: 1}}
          readText(site, [], () => templateRefs(partial.text))
        }
      }
      for (const before of service.after) {
        const to = instance.services.findIndex((other) => other.name === before)
        if (to >= 0)
          addEdge(from, numbered.vertices[to], {
            from: names[from],
            to: vertexName(instance.id, before),
            label: {kind: 'after'},
          })
      }
    })
  }
  for (const cycle of findCyclesNumbered({names, from: edgeFrom, to: edgeTo, edges}))
    problems.push(cycleDiagnostic(cycle))
  return {references, edges, vertices, problems: dedupe(problems)}
}

// A param or template shared by many nodes (a default, a role's setting, a service's script) is
// checked once per text and scope, and its problems are reported once.
const CHECK_LIMIT = 10_000
/** A param's problems in its scope and, when there are none, its references (or why they cannot be read). */
interface ParamCheck {
  problems: TemplateProblem[]
  refs: readonly TemplateRef[]
  refError?: TemplateError
}
const paramChecks = new Map<string, ParamCheck>()
const bodyChecks = new WeakMap<object, Map<string, TemplateProblem[]>>()
const NOT_A_TEMPLATE: ParamCheck = {problems: [], refs: []}

function remember<T>(cache: Map<string, T>, key: string, check: () => T): T {
  let found = cache.get(key)
  if (!found) {
    found = check()
    if (cache.size >= CHECK_LIMIT) cache.clear()
    cache.set(key, found)
  }
  return found
}

function checkParam(text: string): ParamCheck {
  if (!text.includes('{{')) return NOT_A_TEMPLATE
  return remember(paramChecks, text, () => {
    // One parse for both: the check in the param's scope, then the references it makes.
    const {problems, ast} = checkedTemplate(text, {root: paramScope()})
    if (problems.length > 0 || !ast) return {problems, refs: []}
    try {
      return {problems, refs: refsInAst(ast)}
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error
      return {problems, refs: [], refError: error}
    }
  })
}

/** Bodies are cached by identity: every node of a service shares its body object. */
function checkBody(service: CheckService, body: NonNullable<CheckService['body']>): TemplateProblem[] {
  const names = service.params.map((p) => p.name)
  let byParams = bodyChecks.get(body)
  if (!byParams) bodyChecks.set(body, (byParams = new Map()))
  const partials: Record<string, PartialSource> = body.partials ?? {}
  return remember(byParams, JSON.stringify([service.name, names]), () =>
    checkTemplate(body.text, {root: scriptScope(service.name, names), partials}),
  )
}

function dedupe(problems: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>()
  return problems.filter((p) => {
    const key = JSON.stringify([p.source, p.message, p.details])
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/** What resolveRef finds: the position of the service that provides the output, or a fact, or nothing. */
const FACT = -1
const UNRESOLVED = -2

function resolveRef(ref: TemplateRef, target: CheckInstance, at: Source | undefined, problems: Diagnostic[]): number {
  if (ref.kind === 'fact') return FACT
  const services = target.services
  if (ref.service) {
    const position = services.findIndex((s) => s.name === ref.service)
    if (position < 0) {
      const guess = didYouMean(
        ref.service,
        services.map((s) => s.name),
      )
      problems.push({
        message: `${ref.expression}: ${target.id} runs no service "${ref.service}"`,
        source: at,
        hint: guess
          ? `did you mean "${guess}"?`
          : `${target.id} runs: ${services.map((s) => s.name).join(', ') || 'nothing'}`,
      })
      return UNRESOLVED
    }
    const service = services[position]
    if (!service.provides.includes(ref.key)) {
      problems.push({
        message: `${ref.expression}: service ${service.name} of ${target.id} does not provide "${ref.key}"`,
        source: at,
        hint: `it provides: ${service.provides.join(', ') || 'nothing'}`,
      })
      return UNRESOLVED
    }
    return position
  }
  let provider = UNRESOLVED
  for (let position = 0; position < services.length; position++) {
    if (!services[position].provides.includes(ref.key)) continue
    if (provider !== UNRESOLVED) return severalProvide(ref, target, at, problems)
    provider = position
  }
  if (provider !== UNRESOLVED) return provider
  const all = services.flatMap((s) => s.provides)
  const guess = didYouMean(ref.key, all)
  problems.push({
    message: `${ref.expression}: no service of ${target.id} (role ${target.role}) provides "${ref.key}"`,
    source: at,
    hint: guess ? `did you mean "${guess}"?` : `its services provide: ${all.join(', ') || 'nothing'}`,
  })
  return UNRESOLVED
}

function severalProvide(ref: TemplateRef, target: CheckInstance, at: Source | undefined, problems: Diagnostic[]) {
  const providers = target.services.filter((s) => s.provides.includes(ref.key))
  problems.push({
    message: `${ref.expression}: several services of ${target.id} provide "${ref.key}": ${providers.map((s) => s.name).join(', ')}`,
    source: at,
    hint: `name the service: {{output "${ref.target}" "${providers[0].name}" "${ref.key}"}}`,
  })
  return UNRESOLVED
}

function cycleDiagnostic(cycle: Edge<EdgeLabel>[]): Diagnostic {
  const details = cycle.map((e) => {
    const what = e.label?.kind === 'after' ? 'runs after' : `needs ${e.label?.expression ?? 'an output of'}`
    const where = e.label?.source ? `  (${formatSource(e.label.source)})` : ''
    return `${e.from} ${what} ${e.to}${where}`
  })
  const self = cycle.length === 1
  return {
    message: self
      ? `deadlock: ${cycle[0].from} waits for its own output`
      : `deadlock: ${cycle.length} services wait for each other in a cycle`,
    source: cycle[0].label?.source,
    details,
    hint: 'break the cycle: take one of these values from a fact (ip, hostname) or a constant instead of an output',
  }
}
