/**
 * The checks made before anything is created, shared by `nodeset plan` and the config server's
 * registration: every reference names something that exists and provides what is asked, and no
 * (node, service) pair waits on itself through a chain of outputs. Every template is checked in the
 * scope it is rendered in (template.ts): a param value sees the node itself, a service's template
 * also its params, general, locations and hostnames; what passes here renders at node time.
 */
import {type Diagnostic, didYouMean} from '../core/diagnostics.js'
import {NameTable} from './name-table.js'
import {
  CALL_FIELDS,
  isOutputCall,
  keyIsOneOf,
  namesService,
  plainParamRefs,
  refOfCall,
  scanPlainParam,
  serviceIs,
  targetEnd,
  targetStart,
} from './param-refs.js'
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

/**
 * What analyze found. `references`, `edges` and `vertices` are built on first read from the instances
 * analyze was given (which must not change after), then kept; `problems` are there at once.
 */
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

/** Where a template text is written: a param (its position) or the body (-1) or a partial (-2 - its position). */
const BODY = -1
const partialText = (position: number): number => -2 - position

const REF_FIELDS = 6

function grown(data: Int32Array): Int32Array {
  const bigger = new Int32Array(data.length * 2)
  bigger.set(data)
  return bigger
}

/**
 * What analyze finds, as numbers in typed arrays: each reference is a call (by its number) of a text
 * (instance, service, param or body or partial), resolved to a node and the position of its service
 * that provides the output (FACT for a fact); each edge is two vertices and the reference that made
 * it (-1: an `after`). The objects of `references` and `edges` are built from them on first read (the
 * text read again): registration reads only the problems, and the check of 100,000 references makes
 * no object per reference or edge.
 */
class Columns {
  /** Reference `r`'s numbers at `REF_FIELDS * r`: instance, service, text, call, target, provider. */
  private refs: Int32Array
  /** Edge `k`: from vertex `edgeFrom[k]` to `edgeTo[k]`, made by reference `edgeRef[k]`. */
  private edgeFrom: Int32Array
  private edgeTo: Int32Array
  private edgeRef: Int32Array
  refCount = 0
  edgeCount = 0
  private referenceObjects?: Reference[]
  private edgeObjects?: Edge<EdgeLabel>[]

  /** Room for `expected` references and edges to start with, grown as needed. */
  constructor(
    private readonly instances: CheckInstance[],
    private readonly name: (v: number) => string,
    expected: number,
  ) {
    this.refs = new Int32Array(REF_FIELDS * (expected + 16))
    this.edgeFrom = new Int32Array(expected + 16)
    this.edgeTo = new Int32Array(expected + 16)
    this.edgeRef = new Int32Array(expected + 16)
  }

  addEdge(from: number, to: number, ref: number): void {
    const k = this.edgeCount++
    if (k === this.edgeFrom.length) {
      this.edgeFrom = grown(this.edgeFrom)
      this.edgeTo = grown(this.edgeTo)
      this.edgeRef = grown(this.edgeRef)
    }
    this.edgeFrom[k] = from
    this.edgeTo[k] = to
    this.edgeRef[k] = ref
  }

  push(instance: number, service: number, text: number, call: number, target: number, provider: number): number {
    const r = this.refCount++
    const at = r * REF_FIELDS
    if (at + REF_FIELDS > this.refs.length) this.refs = grown(this.refs)
    const refs = this.refs
    refs[at] = instance
    refs[at + 1] = service
    refs[at + 2] = text
    refs[at + 3] = call
    refs[at + 4] = target
    refs[at + 5] = provider
    return r
  }

  /** The ends of every edge, for the cycle check. */
  ends(): {from: Int32Array; to: Int32Array} {
    return {from: this.edgeFrom.subarray(0, this.edgeCount), to: this.edgeTo.subarray(0, this.edgeCount)}
  }

  refInstance = (r: number): number => this.refs[r * REF_FIELDS]
  refService = (r: number): number => this.refs[r * REF_FIELDS + 1]
  refText = (r: number): number => this.refs[r * REF_FIELDS + 2]
  refCall = (r: number): number => this.refs[r * REF_FIELDS + 3]
  refTarget = (r: number): number => this.refs[r * REF_FIELDS + 4]
  refProvider = (r: number): number => this.refs[r * REF_FIELDS + 5]

  private lastText?: {instance: number; service: number; text: number; calls: readonly TemplateRef[]}

  /** The call reference `r` was made by, read again from its text (the last text read is kept: a text's references are together). */
  call(r: number): TemplateRef {
    const instance = this.refInstance(r)
    const service = this.refService(r)
    const text = this.refText(r)
    const last = this.lastText
    if (last?.instance === instance && last.service === service && last.text === text)
      return last.calls[this.refCall(r)]
    const calls = callsOf(this.instances[instance].services[service], text)
    this.lastText = {instance, service, text, calls}
    return calls[this.refCall(r)]
  }

  /** The source of reference `r`: its text's source moved to the line of the call. */
  sourceOf(r: number): Source | undefined {
    const service = this.instances[this.refInstance(r)].services[this.refService(r)]
    return sourceAt(textSource(service, this.refText(r)), this.call(r).line)
  }

  references(): Reference[] {
    if (this.referenceObjects) return this.referenceObjects
    const out: Reference[] = new Array(this.refCount)
    for (let r = 0; r < out.length; r++) {
      const instance = this.instances[this.refInstance(r)]
      const service = instance.services[this.refService(r)]
      const text = this.refText(r)
      const call = this.call(r)
      const target = this.instances[this.refTarget(r)]
      const provider = this.refProvider(r)
      out[r] = {
        from: {node: instance.id, service: service.name, param: text >= 0 ? service.params[text].name : undefined},
        kind: call.kind,
        to: {node: target.id, service: provider === FACT ? undefined : target.services[provider].name},
        key: call.key,
        source: this.sourceOf(r),
        expression: call.expression,
      }
    }
    return (this.referenceObjects = out)
  }

  edge(k: number): Edge<EdgeLabel> {
    const from = this.name(this.edgeFrom[k])
    const to = this.name(this.edgeTo[k])
    const r = this.edgeRef[k]
    if (r < 0) return {from, to, label: {kind: 'after'}}
    const call = this.call(r)
    return {from, to, label: {kind: 'output', key: call.key, expression: call.expression, source: this.sourceOf(r)}}
  }

  edges(): Edge<EdgeLabel>[] {
    if (this.edgeObjects) return this.edgeObjects
    const out: Edge<EdgeLabel>[] = new Array(this.edgeCount)
    for (let k = 0; k < out.length; k++) out[k] = this.edge(k)
    return (this.edgeObjects = out)
  }
}

/** The calls of a text that analyze read without problems, in the order it read them. */
function callsOf(service: CheckService, text: number): readonly TemplateRef[] {
  if (text >= 0) {
    const value = service.params[text].value
    return plainParamRefs(value) ?? checkParam(value).refs
  }
  const body = service.body!
  return templateRefs(text === BODY ? body.text : partialAt(body, text).text)
}

/** The partial a text number (below BODY) stands for. */
function partialAt(body: NonNullable<CheckService['body']>, text: number): {text: string; file: string} {
  return Object.values(body.partials ?? {})[-2 - text]
}

function textSource(service: CheckService, text: number): Source | undefined {
  if (text >= 0) return service.params[text].source
  const body = service.body!
  if (text === BODY) return {file: body.file, line: 1}
  return {file: partialAt(body, text).file, line: 1}
}

/** The (node, service) vertices: how many, the number of each, each one's name and all of them in order. */
interface Vertices {
  count: number
  at: (instance: number, service: number) => number
  name: (v: number) => string
  /** Every instance's every service's vertex name, in order (a name met twice, twice). */
  all: () => string[]
}

/**
 * Numbers for the vertices: instance `i`'s services are `first[i]`, `first[i] + 1`… in order (`count`
 * in all), and names are written only when asked for, unless two (node, service) pairs may share a
 * name (`distinct` false: an id given twice, a service twice, or a `/` in an id and in a service's
 * name: `a/b` + `c` and `a` + `b/c`). Those share a vertex: numbered by name.
 */
function numberVertices(instances: CheckInstance[], first: Int32Array, count: number, distinct: boolean): Vertices {
  let all: string[] | undefined
  const allNames = () =>
    (all ??= instances.flatMap((instance) => instance.services.map((service) => vertexName(instance.id, service.name))))
  if (distinct) return {count, at: (i, s) => first[i] + s, name: (v) => allNames()[v], all: allNames}
  const numbers = new Map<string, number>()
  const names: string[] = []
  for (const name of allNames()) {
    if (numbers.has(name)) continue
    numbers.set(name, names.length)
    names.push(name)
  }
  const at = (i: number, s: number) => numbers.get(vertexName(instances[i].id, instances[i].services[s].name))!
  return {count: names.length, at, name: (v) => names[v], all: allNames}
}

/** Whether two services of one instance share a name. */
function twoServicesAlike(services: CheckService[]): boolean {
  for (let s = 1; s < services.length; s++)
    for (let t = 0; t < s; t++) if (services[s].name === services[t].name) return true
  return false
}

/** The scan's numbers for the calls of one plain param (param-refs.ts), reused for every param. */
const scratch: number[] = new Array<number>(CALL_FIELDS * 64).fill(0)
/** How many param positions keep their last plain text, and how many calls of it. */
const RECENT_PARAMS = 8
const RECENT_CALLS = 8

/** Resolve every reference of every param and template body, and check the graph they make. */
export function analyze(instances: CheckInstance[]): Analysis {
  const analyzer = new Analyzer(instances)
  for (let i = 0; i < instances.length; i++) analyzer.readInstance(i)
  return analyzer.finish()
}

/** A plain param's last text at one param position, and what its calls resolved to. */
interface KeptText {
  text: string | undefined
  count: number
  target: Int32Array
  provider: Int32Array
}

/**
 * One analyze: the deployment's targets and vertices, then each instance's texts read in turn. A
 * class, not closures in analyze, so that V8 compiles its methods once for every analyze.
 */
class Analyzer {
  /**
   * V8 keeps the hidden classes of a class's instances only while one of them is alive, and drops
   * the optimized code built on them with them: with no analyzer alive, a full garbage collection
   * between two analyses sent the next one back to unoptimized code (twice as slow). This small one
   * (its table and columns with it) lives as long as the module.
   */
  static readonly keepsShapes = new Analyzer([])

  readonly problems: Diagnostic[] = []
  // What a reference's target names, in one lookup: a role's nodes (the first by index, or all of
  // them), else the node of that name. Every role and id is an entry of one table; by entry, the
  // role's first node (-1: no role of that name), the node of that id (-1: none), and a role's
  // nodes when it has several.
  private readonly targets: NameTable
  private readonly roleFirst: Int32Array
  private readonly nodeOf: Int32Array
  private readonly several = new Map<number, number[]>()
  private readonly vertices: Vertices
  private readonly columns: Columns
  /** What the calls of the plain param being read resolved to, by call. */
  private readonly resolvedTarget = new Int32Array(RECENT_CALLS)
  private readonly resolvedProvider = new Int32Array(RECENT_CALLS)
  // What a plain param resolves to depends on its text alone, and the same param of the nodes of a
  // role is mostly the same text: the last text read at each param position, and what its calls
  // resolved to, are kept (in place: nothing is allocated per param) and reused when the next is equal.
  private readonly recent: KeptText[] = Array.from({length: RECENT_PARAMS}, () => ({
    text: undefined,
    count: 0,
    target: new Int32Array(RECENT_CALLS),
    provider: new Int32Array(RECENT_CALLS),
  }))

  constructor(private readonly instances: CheckInstance[]) {
    this.targets = new NameTable(2 * instances.length)
    this.roleFirst = new Int32Array(2 * instances.length).fill(-1)
    this.nodeOf = new Int32Array(2 * instances.length).fill(-1)
    // The same pass numbers the vertices: instance i's services from first[i] on.
    const first = new Int32Array(instances.length)
    let vertexCount = 0
    let distinct = true
    let slashInId = false
    for (let i = 0; i < instances.length; i++) {
      const {id, services} = instances[i]
      if (!this.indexInstance(i)) distinct = false
      if (id.includes('/')) slashInId = true
      first[i] = vertexCount
      vertexCount += services.length
      if (distinct && services.length > 1 && twoServicesAlike(services)) distinct = false
    }
    // `a/b` + `c` and `a` + `b/c` name one vertex: a `/` in an id and one in a service's name.
    if (slashInId && instances.some((i) => i.services.some((service) => service.name.includes('/')))) distinct = false
    for (const [r, list] of this.several) {
      list.sort((a, b) => instances[a].index - instances[b].index)
      this.roleFirst[r] = list[0]
    }
    this.vertices = numberVertices(instances, first, vertexCount, distinct)
    this.columns = new Columns(instances, this.vertices.name, 2 * instances.length)
  }

  /** Enter instance `i` under its role and its id; false when the id was met before. */
  private indexInstance(i: number): boolean {
    const {id, role} = this.instances[i]
    const r = this.targets.findOrAdd(role)
    if (this.roleFirst[r] < 0) this.roleFirst[r] = i
    else {
      const list = this.several.get(r)
      if (list) list.push(i)
      else this.several.set(r, [this.roleFirst[r], i])
    }
    const n = this.targets.findOrAdd(id)
    // An id given twice: its last instance is the node of that name, as the vertices' names make it.
    const first = this.nodeOf[n] < 0
    this.nodeOf[n] = i
    return first
  }

  /** The node an entry names first. */
  private firstOf(e: number): number {
    return this.roleFirst[e] >= 0 ? this.roleFirst[e] : this.nodeOf[e]
  }

  /** Every node a role names, or the node a name does. */
  private allTargets(target: string): readonly number[] | undefined {
    const e = this.targets.find(target)
    if (e < 0) return undefined
    return this.roleFirst[e] < 0 ? [this.nodeOf[e]] : (this.several.get(e) ?? [this.roleFirst[e]])
  }

  private roles(): string[] {
    return [...new Set(this.instances.map((i) => i.role))]
  }

  private nodeNames(): string[] {
    return [...new Set(this.instances.map((i) => i.id))]
  }

  /** Every param, template body and `after` of instance `i`. */
  readInstance(i: number): void {
    const services = this.instances[i].services
    for (let s = 0; s < services.length; s++) {
      const service = services[s]
      const params = service.params
      for (let p = 0; p < params.length; p++) {
        const value = params[p].value
        if (this.readPlainParam(i, s, p, value)) continue
        const checked = checkParam(value)
        this.readText(i, s, p, checked.problems, () => {
          if (checked.refError) throw checked.refError
          return checked.refs
        })
      }
      if (service.body) {
        const {text, partials = {}} = service.body
        this.readText(i, s, BODY, checkBody(service, service.body), () => templateRefs(text))
        Object.values(partials).forEach((partial, k) =>
          this.readText(i, s, partialText(k), [], () => templateRefs(partial.text)),
        )
      }
      for (const before of service.after) {
        const to = services.findIndex((other) => other.name === before)
        if (to >= 0) this.columns.addEdge(this.vertices.at(i, s), this.vertices.at(i, to), -1)
      }
    }
  }

  /** A param of the plain shape (param-refs.ts), read; false when it is not of that shape. */
  private readPlainParam(instance: number, service: number, param: number, value: string): boolean {
    const kept = param < RECENT_PARAMS ? this.recent[param] : undefined
    if (kept !== undefined && kept.text === value) {
      for (let c = 0; c < kept.count; c++) this.addRef(instance, service, param, c, kept.target[c], kept.provider[c])
      return true
    }
    const count = scanPlainParam(value, scratch)
    if (count < 0) return false
    let all = true
    for (let c = 0; c < count; c++) if (!this.readPlainCall(instance, service, param, value, c)) all = false
    if (kept !== undefined && all && count <= RECENT_CALLS) {
      kept.text = value
      kept.count = count
      for (let c = 0; c < count; c++) {
        kept.target[c] = this.resolvedTarget[c]
        kept.provider[c] = this.resolvedProvider[c]
      }
    }
    return true
  }

  /**
   * Call `c` of a plain param, read from the scan's numbers: the names it gives are looked up where
   * they are written. What it resolves to is kept at `c`; a call that does not resolve goes through
   * readRefs for its problem: false.
   */
  private readPlainCall(instance: number, service: number, param: number, value: string, c: number): boolean {
    const base = c * CALL_FIELDS
    const e = this.targets.findRun(value, targetStart(scratch, base), targetEnd(scratch, base))
    const target = e < 0 ? -1 : this.firstOf(e)
    let provider = UNRESOLVED
    if (target >= 0) provider = isOutputCall(scratch, base) ? providerOfCall(this.instances[target], value, base) : FACT
    if (provider === UNRESOLVED) {
      this.readRefs(instance, service, param, [refOfCall(value, scratch, base)], c)
      return false
    }
    if (c < RECENT_CALLS) {
      this.resolvedTarget[c] = target
      this.resolvedProvider[c] = provider
    }
    this.addRef(instance, service, param, c, target, provider)
    return true
  }

  private addRef(instance: number, service: number, param: number, c: number, target: number, provider: number): void {
    const r = this.columns.push(instance, service, param, c, target, provider)
    if (provider !== FACT)
      this.columns.addEdge(this.vertices.at(instance, service), this.vertices.at(target, provider), r)
  }

  /** The references of one text's calls `read`, the first of them its call number `firstCall`. */
  private readRefs(instance: number, service: number, text: number, read: readonly TemplateRef[], firstCall = 0): void {
    const {instances, problems} = this
    const at = (call: TemplateRef) => sourceAt(textSource(instances[instance].services[service], text), call.line)
    for (let c = 0; c < read.length; c++) {
      const call = read[c]
      const named = this.allTargets(call.target)
      if (named === undefined) {
        const guess = didYouMean(call.target, [...this.roles(), ...this.nodeNames()])
        problems.push({
          message: `${call.expression} refers to "${call.target}", but no role or node has that name`,
          source: at(call),
          hint: guess ? `did you mean "${guess}"?` : `roles are: ${this.roles().join(', ')}`,
        })
        continue
      }
      const count = call.all ? named.length : 1
      for (let t = 0; t < count; t++) {
        const target = named[t]
        const provider = resolveRef(call, instances[target], () => at(call), problems)
        if (provider === UNRESOLVED) continue
        const r = this.columns.push(instance, service, text, firstCall + c, target, provider)
        if (call.kind === 'output' && provider !== FACT)
          this.columns.addEdge(this.vertices.at(instance, service), this.vertices.at(target, provider), r)
      }
    }
  }

  /** Problems of a text (reported, with the text's place), else its references (or why they cannot be read). */
  private readText(
    instance: number,
    service: number,
    text: number,
    found: readonly TemplateProblem[],
    refs: () => readonly TemplateRef[],
  ): void {
    const s = this.instances[instance].services[service]
    const what = () => (text >= 0 ? `param ${s.params[text].name} of ${s.name}` : `template of ${s.name}`)
    const source = textSource(s, text)
    for (const p of found) {
      this.problems.push({
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
      this.problems.push({
        message: `${what()}: ${error.message}`,
        source: sourceAt(source, error.line),
        hint: error.hint ?? 'fix the {{…}} expression; see "Node-time interpolation" in the README',
      })
      return
    }
    this.readRefs(instance, service, text, read)
  }

  /** The cycle check, and the analysis. */
  finish(): Analysis {
    const {columns, vertices, problems} = this
    const {from, to} = columns.ends()
    const graph = {count: vertices.count, name: vertices.name, from, to, edge: (k: number) => columns.edge(k)}
    for (const cycle of findCyclesNumbered(graph)) problems.push(cycleDiagnostic(cycle))
    return {
      get references() {
        return columns.references()
      },
      get edges() {
        return columns.edges()
      },
      get vertices() {
        return vertices.all()
      },
      problems: dedupe(problems),
    }
  }
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

/**
 * The position of the service of `target` that provides the output a plain call asks for (of the
 * service it names, when it names one), read from the scan's numbers at `base`; or UNRESOLVED when
 * resolveRef would report a problem: it then says which.
 */
function providerOfCall(target: CheckInstance, value: string, base: number): number {
  const services = target.services
  if (namesService(scratch, base)) {
    for (let position = 0; position < services.length; position++)
      if (serviceIs(value, scratch, base, services[position].name))
        return keyIsOneOf(value, scratch, base, services[position].provides) ? position : UNRESOLVED
    return UNRESOLVED
  }
  let provider = UNRESOLVED
  for (let position = 0; position < services.length; position++) {
    if (!keyIsOneOf(value, scratch, base, services[position].provides)) continue
    if (provider !== UNRESOLVED) return UNRESOLVED
    provider = position
  }
  return provider
}

/** What resolveRef finds: the position of the service that provides the output, or a fact, or nothing. */
const FACT = -1
const UNRESOLVED = -2

function resolveRef(
  ref: TemplateRef,
  target: CheckInstance,
  at: () => Source | undefined,
  problems: Diagnostic[],
): number {
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
        source: at(),
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
        source: at(),
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
    source: at(),
    hint: guess ? `did you mean "${guess}"?` : `its services provide: ${all.join(', ') || 'nothing'}`,
  })
  return UNRESOLVED
}

function severalProvide(ref: TemplateRef, target: CheckInstance, at: () => Source | undefined, problems: Diagnostic[]) {
  const providers = target.services.filter((s) => s.provides.includes(ref.key))
  problems.push({
    message: `${ref.expression}: several services of ${target.id} provide "${ref.key}": ${providers.map((s) => s.name).join(', ')}`,
    source: at(),
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
