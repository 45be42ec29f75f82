/**
 * Rendering without handlebars for the templates template-scan.ts reads (text and plain mustaches:
 * `app{{n}}.{{general.base_domain}}`, `{{output "db" "port"}}`): the output is the very string
 * handlebars' `compile(template, {noEscape: true, strict: false})(context)` gives with the same
 * helpers, so handlebars (44 modules) is loaded only for templates that need it. Where the answer
 * could differ in any way — a name that is one of handlebars' own helpers or an Object.prototype
 * member, a value that is inherited, a function or an object, `this`, `..` — it answers
 * undefined and the caller asks handlebars.
 *
 * How handlebars runs such a template (its compiled code, for the subset): every mustache is a value
 * that becomes `""` when null or undefined; the values and texts are joined with JavaScript's `+`
 * from left to right, and the result is `"" + that` (so `{{a}}{{b}}` of 1 and 2 is "3", as there).
 * `{{name}}` alone is a helper of that name if one is registered (called with the options only),
 * else the context's property; `{{name arg…}}` calls the helper with the arguments' values and the
 * options; `{{a.b}}` reads properties, own ones only. Arguments that are paths are read the same way
 * and never called.
 */
import type {ScannedProgram} from './template-scan.js'

export type Helper = (this: unknown, ...args: unknown[]) => unknown

/** Handlebars' own helpers (and its known-helper names): a mustache naming one is left to handlebars. */
const HANDLEBARS_HELPERS = new Set([
  'blockHelperMissing',
  'each',
  'helperMissing',
  'if',
  'unless',
  'log',
  'lookup',
  'with',
])

/** Why evaluation stopped: handlebars renders this one. */
const NOT_PLAIN = Symbol('not plain')

type Primitive = string | number | boolean

type Scanned = ScannedProgram['body'][number]
type Mustache = Extract<Scanned, {type: 'MustacheStatement'}>
type Expression = Mustache['path']
type PathNode = Extract<Expression, {type: 'PathExpression'}>

/**
 * The output of a scanned template with `context` as its root and `helpers` registered (on top of
 * handlebars' own), or undefined where only handlebars can say. Errors thrown by a helper propagate
 * as they would from handlebars.
 */
export function evaluatePlain(
  program: ScannedProgram,
  context: Record<string, unknown>,
  helpers: Readonly<Record<string, Helper>>,
): string | undefined {
  try {
    // Decided before anything runs: every name is of the evaluated kind, so no helper runs twice for nothing.
    for (const statement of program.body) if (statement.type === 'MustacheStatement') precheck(statement, helpers)
    let output: Primitive | undefined
    for (const statement of program.body) {
      const value = statement.type === 'ContentStatement' ? statement.value : mustache(statement, context, helpers)
      // `+` as handlebars' compiled code applies it: numbers and booleans add until a string is met.
      output = output === undefined ? value : plus(output, value)
    }
    return '' + (output ?? '')
  } catch (error) {
    if (error === NOT_PLAIN) return undefined
    throw error
  }
}

function plus(a: Primitive, b: Primitive): Primitive {
  // JavaScript's own `+` on primitives (string concatenation, or numeric addition of numbers and booleans).
  return (a as number) + (b as number)
}

/** A path handlebars reads as a name to look up on the context (no `this`, `.`, `..`, no depth). */
function isPlainPath(path: Expression): path is PathNode {
  return (
    path.type === 'PathExpression' &&
    !path.data &&
    path.depth === 0 &&
    path.parts.length > 0 &&
    !/^\.|this\b/.test(path.original) &&
    path.parts.every((part) => !(part in Object.prototype))
  )
}

function precheck(statement: Mustache, helpers: Readonly<Record<string, Helper>>): void {
  const {path, params} = statement
  if (!isPlainPath(path)) throw NOT_PLAIN
  const simple = path.parts.length === 1
  if (simple && HANDLEBARS_HELPERS.has(path.parts[0])) throw NOT_PLAIN
  // A call: only of a registered helper (else handlebars decides: a function on the context, or its error).
  if (params.length > 0 && !(simple && Object.hasOwn(helpers, path.parts[0]))) throw NOT_PLAIN
  for (const param of params) if (param.type === 'PathExpression' && !isPlainPath(param)) throw NOT_PLAIN
}

function mustache(statement: Mustache, context: Record<string, unknown>, helpers: Readonly<Record<string, Helper>>) {
  const path = statement.path as PathNode
  const name = path.parts[0]
  const options = {
    name: path.original,
    hash: {},
    data: {root: context},
    loc: {start: statement.loc.start, end: statement.loc.end},
  }
  let value: unknown
  if (path.parts.length === 1 && Object.hasOwn(helpers, name)) {
    const args = statement.params.map((param) =>
      param.type === 'PathExpression' ? lookup(context, param) : param.value,
    )
    value = helpers[name].call(context, ...args, options)
  } else {
    value = lookup(context, path)
    if (typeof value === 'function') throw NOT_PLAIN
  }
  if (value === null || value === undefined) return ''
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value
  throw NOT_PLAIN
}

/** Each segment an own property of a plain object or array; null and undefined pass through, as in handlebars. */
function lookup(context: unknown, path: PathNode): unknown {
  let current = context
  for (const part of path.parts) {
    if (current === null || current === undefined) return current
    if (!isPlainContainer(current)) throw NOT_PLAIN
    const value = (current as Record<string, unknown>)[part]
    if (value === null || value === undefined) return value
    if (!Object.hasOwn(current, part)) throw NOT_PLAIN
    current = value
  }
  return current
}

function isPlainContainer(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false
  if (Array.isArray(value)) return true
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}
