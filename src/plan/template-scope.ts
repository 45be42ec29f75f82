/**
 * Scopes: what each name stands for where a template is rendered (a param value, a service's
 * script, node_name, or the variables rendering is given), and name lookup in them with the
 * problem and hint for a name that stands for nothing.
 */
import {didYouMean} from '../core/diagnostics.js'
import {FACT_HELPERS} from './template-refs.js'
import type {AstNode} from './template-syntax.js'

/**
 * What a name stands for when a template is checked: a printable value, a list, an object with known
 * fields (and, when `open`, any other key), or something only known at node time (`any`).
 */
export type Shape =
  | {kind: 'value'}
  | {kind: 'any'}
  | {kind: 'list'; of: Shape}
  | {
      kind: 'object'
      fields: Record<string, Shape>
      open?: Shape
      /** How messages name it, e.g. "service web" with noun "param": `service web has no param "prot"`. */
      label?: string
      noun?: string
      /** Extra advice for an unknown name here. */
      unknown?: (name: string) => string | undefined
      /** Names that exist in other scopes, with where they are: said before any "did you mean". */
      elsewhere?: Record<string, string>
    }

export const VALUE: Shape = {kind: 'value'}
export const ANY: Shape = {kind: 'any'}
const FACTS: Shape = {kind: 'object', fields: {}, open: ANY}
export const list = (of: Shape): Shape => ({kind: 'list', of})
const object = (fields: Record<string, Shape>, extra: Partial<Extract<Shape, {kind: 'object'}>> = {}): Shape => ({
  kind: 'object',
  fields,
  ...extra,
})

/** The node a template is rendered for, wherever it is rendered (setup-node and the config server). */
const NODE_FIELDS: Record<string, Shape> = {
  name: VALUE,
  role: VALUE,
  index: VALUE,
  n: VALUE,
  ip: VALUE,
  hostname: VALUE,
  private_ip: VALUE,
  facts: FACTS,
}
export const NODE_VIEW = object(
  {...NODE_FIELDS, outputs: object({}, {open: object({}, {open: VALUE})})},
  {label: 'a node of (nodes …)'},
)
const LOCATION = object(
  {url: VALUE, host: VALUE, path: VALUE, app: VALUE, port: VALUE},
  {label: 'a location', noun: 'field'},
)
const SCRIPT_ONLY = ['params', 'general', 'deployment', 'locations', 'hostnames']
const PARAM_SEES = 'name, role, index, n, ip, hostname, private_ip, facts.KEY and the helpers ip, output, nodes…'

const INPUT_HINT =
  '{{input}} is only ever a whole value in the nodeset file (SERVICE.PARAM = {{input}}); in service.json, a param given at launch is marked "input": true'

/** A param value (a `SERVICE.PARAM = …` or a default): rendered by setup-node and by the config server alike. */
export function paramScope(): Shape {
  return (PARAM_SCOPE ??= makeParamScope())
}
let PARAM_SCOPE: Shape | undefined

function makeParamScope(): Shape {
  const elsewhere = (name: string) =>
    `${name} is for a service's templates (setup.sh.hbs and its partials); a param value sees ${PARAM_SEES}`
  return object(NODE_FIELDS, {
    elsewhere: {
      ...Object.fromEntries(SCRIPT_ONLY.map((name) => [name, elsewhere(name)])),
      input: INPUT_HINT,
    },
    unknown: (name) => {
      const like = didYouMean(name, SCRIPT_ONLY)
      if (like) return elsewhere(like)
      return `a param value sees ${PARAM_SEES}; a fact this node reports is {{facts.${name}}}`
    },
  })
}

/** A service's setup.sh.hbs and its partials, as setup-node renders them. */
export function scriptScope(service: string, params: string[]): Shape {
  return object(
    {
      ...NODE_FIELDS,
      deployment: VALUE,
      general: object({name: VALUE, base_domain: VALUE}, {label: 'general'}),
      hostnames: list(VALUE),
      locations: list(LOCATION),
      params: object(Object.fromEntries(params.map((p) => [p, VALUE])), {label: `service ${service}`, noun: 'param'}),
    },
    {
      elsewhere: {input: `a param given at launch is read here as {{params.NAME}}; ${INPUT_HINT}`},
      unknown: (name) =>
        `a fact this node reports is {{facts.${name}}}; see "The layer and template contract" in the README`,
    },
  )
}

/** `node_name`, rendered for each node number when the plan is made. */
export function nodeNameScope(): Shape {
  return object(
    {n: VALUE, index: VALUE, role: VALUE, general: object({name: VALUE, base_domain: VALUE}, {label: 'general'})},
    {
      unknown: () =>
        'node_name may use {{n}} (the node number), {{index}}, {{role}}, {{general.name}} and {{general.base_domain}}',
    },
  )
}

/** The shape of the variables a template is rendered with; facts stay open, the built-in facts are always there. */
export function shapeOfVars(vars: Record<string, unknown>): Shape {
  const root = shapeOf(vars, 0) as Extract<Shape, {kind: 'object'}>
  for (const name of FACT_HELPERS) root.fields[name] ??= VALUE
  return root
}

function shapeOf(value: unknown, depth: number, key?: string): Shape {
  if (key === 'facts') return FACTS
  if (depth > 8) return ANY
  if (Array.isArray(value)) return list(value.length ? shapeOf(value[0], depth + 1) : ANY)
  if (value !== null && typeof value === 'object')
    return object(
      Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shapeOf(v, depth + 1, k)])),
      key === 'params' ? {label: 'params'} : {},
    )
  return VALUE
}

/** Where the checker is: the contexts `../` climbs, block params, whether inside {{#each}}, the partial file. */
export interface Frame {
  contexts: Shape[]
  blockParams: Array<Record<string, Shape>>
  inEach: boolean
  file?: string
  partials: string[]
}

/** How a problem is reported: at an AST node, in a frame (its file). */
export type Report = (node: AstNode, frame: Frame, message: string, hint?: string) => void

/** Name lookup in a frame: what a path stands for, with a problem reported when it stands for nothing. */
export class Names {
  constructor(
    private readonly root: Shape,
    /** The helpers a name may be a misspelling of. */
    private readonly helpers: string[],
    private readonly problem: Report,
  ) {}

  resolve(path: AstNode, frame: Frame): Shape {
    const parts = path.parts ?? []
    const original = String(path.original)
    if (path.data) {
      const [head, ...rest] = parts
      if (head === 'root') return this.walkParts(path, frame, this.root, rest, '@root.')
      if (['index', 'first', 'last', 'key'].includes(head)) {
        if (!frame.inEach)
          this.problem(path, frame, `@${head} is set only inside {{#each}}`, 'use it between {{#each …}} and {{/each}}')
        return VALUE
      }
      this.problem(
        path,
        frame,
        `unknown @${head}`,
        'inside {{#each}}: @index, @first, @last, @key; anywhere: @root.NAME',
      )
      return ANY
    }
    const depth = path.depth ?? 0
    const scoped = depth > 0 || /^(this|\.)([./]|$)/.test(original)
    if (!scoped && parts.length > 0) {
      for (let i = frame.blockParams.length - 1; i >= 0; i--) {
        const shape = frame.blockParams[i][parts[0]]
        if (shape) return this.walkParts(path, frame, shape, parts.slice(1), `${parts[0]}.`)
      }
    }
    const at = frame.contexts.length - 1 - depth
    if (at < 0) {
      this.problem(path, frame, `${original} goes above the top of the template`, 'use one ../ per enclosing {{#each}}')
      return ANY
    }
    return this.walkParts(
      path,
      frame,
      frame.contexts[at],
      parts,
      original.slice(0, original.length - parts.join('.').length),
    )
  }

  walkParts(node: AstNode, frame: Frame, start: Shape, parts: string[], prefix: string): Shape {
    let shape = start
    let sofar = prefix
    for (const [i, part] of parts.entries()) {
      if (shape.kind === 'any') return ANY
      const here = sofar.replace(/[./]$/, '')
      if (shape.kind === 'value') {
        this.problem(node, frame, `${here} is a single value; it has no "${part}"`, `write {{${here}}}`)
        return ANY
      }
      if (shape.kind === 'list') {
        if (/^\d+$/.test(part)) shape = shape.of
        else if (part === 'length') shape = VALUE
        else {
          this.problem(
            node,
            frame,
            `${here} is a list; it has no "${part}"`,
            `go through it: {{#each ${here}}}…{{/each}}`,
          )
          return ANY
        }
      } else {
        const next = Object.hasOwn(shape.fields, part) ? shape.fields[part] : shape.open
        if (!next) {
          this.unknownField(node, frame, shape, part, sofar, parts.slice(i + 1))
          return ANY
        }
        shape = next
      }
      sofar = `${sofar}${part}.`
    }
    return shape
  }

  unknownField(
    node: AstNode,
    frame: Frame,
    shape: Extract<Shape, {kind: 'object'}>,
    part: string,
    prefix: string,
    rest: string[] = [],
  ) {
    const fields = Object.keys(shape.fields)
    const top = prefix === '' || prefix === '@root.'
    const guess = didYouMean(part, top ? [...fields, ...this.helpers] : fields)
    const message = shape.label
      ? `${shape.label} has no ${shape.noun ? `${shape.noun} ` : ''}"${part}"`
      : `unknown variable "${top ? part : `${prefix}${part}`}"`
    const listed = fields.length
      ? `${shape.noun ? `its ${shape.noun}s` : 'known here'}: ${fields.join(', ')}`
      : undefined
    const moved = top ? shape.elsewhere?.[part] : undefined
    const hint = moved
      ? moved
      : guess
        ? `did you mean {{${[`${prefix}${guess}`, ...(this.helpers.includes(guess) ? [] : rest)].join('.')}}}?`
        : (shape.unknown?.(part) ?? listed ?? (shape.noun ? `it has no ${shape.noun}s` : undefined))
    this.problem(node, frame, message, hint)
  }
}
