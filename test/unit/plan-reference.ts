// The plan's graph functions and checks as they were first written (maps and sets of names, every
// template read through handlebars' AST): the reference the faster ones are compared against.
import {type Diagnostic, didYouMean} from '../../src/core/diagnostics.js'
import {formatSource, type Source} from '../../src/core/source.js'
import type {Analysis, CheckInstance, CheckService, EdgeLabel} from '../../src/plan/check.js'
import type {Edge} from '../../src/plan/graph.js'
import {
  checkTemplate,
  extractRefs,
  paramScope,
  type PartialSource,
  scriptScope,
  TemplateError,
  type TemplateProblem,
  type TemplateRef,
} from '../../src/plan/template.js'
import type {Reference} from '../../src/plan/types.js'

const vertexName = (node: string, service: string): string => `${node}/${service}`

/** Strongly connected components, each a list of vertices, in reverse topological order. */
export function referenceComponents(vertices: Iterable<string>, edges: Edge[]): string[][] {
  const adjacency = adjacencyOf(edges)
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const components: string[][] = []
  let counter = 0

  const all = new Set<string>(vertices)
  for (const e of edges) {
    all.add(e.from)
    all.add(e.to)
  }

  for (const root of all) {
    if (index.has(root)) continue
    // Each frame: a vertex and the position of the next neighbour to look at.
    const frames: Array<{v: string; next: number}> = [{v: root, next: 0}]
    index.set(root, counter)
    low.set(root, counter++)
    stack.push(root)
    onStack.add(root)
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]
      const neighbours = adjacency.get(frame.v) ?? []
      if (frame.next < neighbours.length) {
        const w = neighbours[frame.next++].to
        if (!index.has(w)) {
          index.set(w, counter)
          low.set(w, counter++)
          stack.push(w)
          onStack.add(w)
          frames.push({v: w, next: 0})
        } else if (onStack.has(w)) {
          low.set(frame.v, Math.min(low.get(frame.v)!, index.get(w)!))
        }
        continue
      }
      frames.pop()
      if (frames.length > 0) {
        const parent = frames[frames.length - 1].v
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.v)!))
      }
      if (low.get(frame.v) === index.get(frame.v)) {
        const component: string[] = []
        let w: string
        do {
          w = stack.pop()!
          onStack.delete(w)
          component.push(w)
        } while (w !== frame.v)
        components.push(component)
      }
    }
  }
  return components
}

function adjacencyOf<L>(edges: Edge<L>[]): Map<string, Edge<L>[]> {
  const adjacency = new Map<string, Edge<L>[]>()
  for (const e of edges) {
    const list = adjacency.get(e.from)
    if (list) list.push(e)
    else adjacency.set(e.from, [e])
  }
  return adjacency
}

/**
 * One concrete cycle per cyclic component (self-loops included), as the list of edges that walk it,
 * starting at the component's first vertex in sorted order so messages are stable.
 */
export function referenceCycles<L>(vertices: Iterable<string>, edges: Edge<L>[]): Edge<L>[][] {
  const adjacency = adjacencyOf(edges)
  const cycles: Edge<L>[][] = []
  for (const component of referenceComponents(vertices, edges)) {
    const members = new Set(component)
    const start = [...component].sort()[0]
    if (component.length === 1) {
      const self = (adjacency.get(start) ?? []).find((e) => e.to === start)
      if (self) cycles.push([self])
      continue
    }
    cycles.push(shortestCycleThrough(start, members, adjacency))
  }
  return cycles.sort((a, b) => (a[0].from < b[0].from ? -1 : a[0].from > b[0].from ? 1 : 0))
}

/** Breadth-first from `start` inside its component back to `start`: the shortest cycle through it. */
function shortestCycleThrough<L>(start: string, members: Set<string>, adjacency: Map<string, Edge<L>[]>): Edge<L>[] {
  const via = new Map<string, Edge<L>>()
  const queue: string[] = [start]
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head]
    for (const e of adjacency.get(v) ?? []) {
      if (!members.has(e.to)) continue
      if (e.to === start) {
        const backwards: Edge<L>[] = [e]
        let at = v
        while (at !== start) {
          const step = via.get(at)!
          backwards.push(step)
          at = step.from
        }
        return backwards.reverse()
      }
      if (!via.has(e.to)) {
        via.set(e.to, e)
        queue.push(e.to)
      }
    }
  }
  throw new Error(`internal: ${start} is in a cyclic component but no cycle was found`)
}

function sourceAt(base: Source | undefined, templateLine: number): Source | undefined {
  return base ? {file: base.file, line: base.line + templateLine - 1} : undefined
}

/** Resolve every reference of every param and template body, and check the graph they make. */
export function referenceAnalyze(instances: CheckInstance[]): Analysis {
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
  for (const cycle of referenceCycles(vertices, edges)) problems.push(cycleDiagnostic(cycle))
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
