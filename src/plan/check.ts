/**
 * The checks made before anything is created, shared by `nodeset plan` and the config server's
 * registration: every reference names something that exists and provides what is asked, and no
 * (node, service) pair waits on itself through a chain of outputs. Every template is checked in the
 * scope it is rendered in (template.ts): a param value sees the node itself, a service's template
 * also its params, general, locations and hostnames; what passes here renders at node time.
 */
import {type Diagnostic, didYouMean} from '../core/diagnostics.js'
import {type Edge, findCycles} from './graph.js'
import {
  checkTemplate,
  extractRefs,
  paramScope,
  type PartialSource,
  scriptScope,
  TemplateError,
  type TemplateProblem,
  type TemplateRef,
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

/** Resolve every reference of every param and template body, and check the graph they make. */
export function analyze(instances: CheckInstance[]): Analysis {
  const problems: Diagnostic[] = []
  const references: Reference[] = []
  const edges: Edge<EdgeLabel>[] = []
  const vertices: string[] = []
  const byName = new Map(instances.map((i) => [i.id, i]))
  const byRole = new Map<string, CheckInstance[]>()
  for (const i of instances) {
    const list = byRole.get(i.role)
    if (list) list.push(i)
    else byRole.set(i.role, [i])
  }
  for (const list of byRole.values()) list.sort((a, b) => a.index - b.index)
  const targetsOf = (target: string): CheckInstance[] =>
    byRole.get(target) ?? (byName.has(target) ? [byName.get(target)!] : [])

  for (const instance of instances) {
    for (const service of instance.services) {
      const from = vertexName(instance.id, service.name)
      vertices.push(from)
      const texts: Array<{param?: string; text: string; source?: Source; problems: TemplateProblem[]}> =
        service.params.map((p) => ({
          param: p.name,
          text: p.value,
          source: p.source,
          problems: checkParam(p.value),
        }))
      if (service.body) {
        const {text, file, partials = {}} = service.body
        texts.push({text, source: {file, line: 1}, problems: checkBody(service, service.body)})
        for (const partial of Object.values(partials))
          texts.push({text: partial.text, source: {file: partial.file, line: 1}, problems: []})
      }
      for (const {param, text, source, problems: found} of texts) {
        const what = param ? `param ${param} of ${service.name}` : `template of ${service.name}`
        for (const p of found) {
          problems.push({
            message: `${what}: ${p.message}`,
            source: p.file ? {file: p.file, line: p.line} : sourceAt(source, p.line),
            hint: p.hint ?? 'fix the {{…}} expression; see "Node-time interpolation" in the README',
          })
        }
        if (found.length > 0) continue
        let refs: readonly TemplateRef[]
        try {
          refs = extractRefs(text)
        } catch (error) {
          if (!(error instanceof TemplateError)) throw error
          problems.push({
            message: `${what}: ${error.message}`,
            source: sourceAt(source, error.line),
            hint: error.hint ?? 'fix the {{…}} expression; see "Node-time interpolation" in the README',
          })
          continue
        }
        for (const ref of refs) {
          const at = sourceAt(source, ref.line)
          const targets = targetsOf(ref.target)
          if (targets.length === 0) {
            const guess = didYouMean(ref.target, [...byRole.keys(), ...byName.keys()])
            problems.push({
              message: `${ref.expression} refers to "${ref.target}", but no role or node has that name`,
              source: at,
              hint: guess ? `did you mean "${guess}"?` : `roles are: ${[...byRole.keys()].join(', ')}`,
            })
            continue
          }
          for (const target of ref.all ? targets : targets.slice(0, 1)) {
            const resolved = resolveRef(ref, target, at, problems)
            if (!resolved) continue
            references.push({
              from: {node: instance.id, service: service.name, param},
              kind: ref.kind,
              to: {node: target.id, service: resolved.service},
              key: ref.key,
              source: at,
              expression: ref.expression,
            })
            if (ref.kind === 'output' && resolved.service) {
              edges.push({
                from,
                to: vertexName(target.id, resolved.service),
                label: {kind: 'output', key: ref.key, expression: ref.expression, source: at},
              })
            }
          }
        }
      }
      for (const before of service.after) {
        if (instance.services.some((s) => s.name === before)) {
          edges.push({from, to: vertexName(instance.id, before), label: {kind: 'after'}})
        }
      }
    }
  }
  for (const cycle of findCycles(vertices, edges)) problems.push(cycleDiagnostic(cycle))
  return {references, edges, vertices, problems: dedupe(problems)}
}

// A param or template shared by many nodes (a default, a role's setting, a service's script) is
// checked once per text and scope, and its problems are reported once.
const CHECK_LIMIT = 10_000
const paramChecks = new Map<string, TemplateProblem[]>()
const bodyChecks = new WeakMap<object, Map<string, TemplateProblem[]>>()

function remember(cache: Map<string, TemplateProblem[]>, key: string, check: () => TemplateProblem[]) {
  let found = cache.get(key)
  if (!found) {
    found = check()
    if (cache.size >= CHECK_LIMIT) cache.clear()
    cache.set(key, found)
  }
  return found
}

function checkParam(text: string): TemplateProblem[] {
  if (!text.includes('{{')) return []
  return remember(paramChecks, text, () => checkTemplate(text, {root: paramScope()}))
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

function resolveRef(
  ref: TemplateRef,
  target: CheckInstance,
  at: Source | undefined,
  problems: Diagnostic[],
): {service?: string} | undefined {
  if (ref.kind === 'fact') return {}
  if (ref.service) {
    const service = target.services.find((s) => s.name === ref.service)
    if (!service) {
      const guess = didYouMean(
        ref.service,
        target.services.map((s) => s.name),
      )
      problems.push({
        message: `${ref.expression}: ${target.id} runs no service "${ref.service}"`,
        source: at,
        hint: guess
          ? `did you mean "${guess}"?`
          : `${target.id} runs: ${target.services.map((s) => s.name).join(', ') || 'nothing'}`,
      })
      return undefined
    }
    if (!service.provides.includes(ref.key)) {
      problems.push({
        message: `${ref.expression}: service ${service.name} of ${target.id} does not provide "${ref.key}"`,
        source: at,
        hint: `it provides: ${service.provides.join(', ') || 'nothing'}`,
      })
      return undefined
    }
    return {service: service.name}
  }
  const providers = target.services.filter((s) => s.provides.includes(ref.key))
  if (providers.length === 1) return {service: providers[0].name}
  if (providers.length === 0) {
    const all = target.services.flatMap((s) => s.provides)
    const guess = didYouMean(ref.key, all)
    problems.push({
      message: `${ref.expression}: no service of ${target.id} (role ${target.role}) provides "${ref.key}"`,
      source: at,
      hint: guess ? `did you mean "${guess}"?` : `its services provide: ${all.join(', ') || 'nothing'}`,
    })
    return undefined
  }
  problems.push({
    message: `${ref.expression}: several services of ${target.id} provide "${ref.key}": ${providers.map((s) => s.name).join(', ')}`,
    source: at,
    hint: `name the service: {{output "${ref.target}" "${providers[0].name}" "${ref.key}"}}`,
  })
  return undefined
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
