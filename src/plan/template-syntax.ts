/**
 * The syntax of node-time templates: handlebars' parser, its AST as nodeset reads it, expressions as
 * written (for messages), and parse errors in words with the template's line. Parsed ASTs are shared.
 * Templates of text and plain mustaches are read by template-scan.ts into the same AST, faster;
 * handlebars itself is loaded only when a template needs it.
 */
import {createRequire} from 'node:module'
import {scanPlain} from './template-scan.js'

type HandlebarsModule = typeof import('handlebars')
let loaded: HandlebarsModule | undefined

/** Handlebars, loaded on first use (synchronously: rendering and checking are synchronous). */
export function handlebars(): HandlebarsModule {
  return (loaded ??= createRequire(import.meta.url)('handlebars') as HandlebarsModule)
}

let parser: HandlebarsModule['parse'] | undefined

/** Handlebars' parser alone, without its compiler and runtime: the very function `Handlebars.parse` is. */
function handlebarsParse(): HandlebarsModule['parse'] {
  const base = 'handlebars/dist/cjs/handlebars/compiler/base.js'
  return (parser ??= (createRequire(import.meta.url)(base) as Pick<HandlebarsModule, 'parse'>).parse)
}

export class TemplateError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly hint?: string,
  ) {
    super(message)
  }
}

export interface AstNode {
  type: string
  loc?: {start: {line: number; column: number}}
  path?: AstNode
  name?: AstNode
  params?: AstNode[]
  hash?: {pairs?: Array<{key: string; value: AstNode}>}
  program?: {body?: AstNode[]; blockParams?: string[]}
  inverse?: {body?: AstNode[]; blockParams?: string[]}
  body?: AstNode[]
  value?: unknown
  original?: unknown
  parts?: string[]
  depth?: number
  data?: boolean
  [k: string]: unknown
}

/** An expression as written, for messages: `"service:mysql"`, `params.port`, `(nodes "appserver")`. */
export function exprText(node: AstNode | undefined): string {
  if (!node) return ''
  if (node.type === 'StringLiteral') return JSON.stringify(node.value)
  if (node.type === 'PathExpression') return String(node.original)
  if (node.type === 'SubExpression') return `(${callText(node)})`
  if (node.type === 'UndefinedLiteral' || node.type === 'NullLiteral')
    return node.type === 'NullLiteral' ? 'null' : 'undefined'
  return String(node.original ?? node.value ?? node.type)
}

export function callText(node: AstNode): string {
  const hash = (node.hash?.pairs ?? []).map((p) => `${p.key}=${exprText(p.value)}`)
  return [exprText(node.path ?? node.name), ...(node.params ?? []).map(exprText), ...hash].join(' ')
}

export function simpleName(path: AstNode): string | undefined {
  const parts = path.parts ?? []
  if (path.data || (path.depth ?? 0) > 0 || parts.length !== 1) return undefined
  return String(path.original) === parts[0] ? parts[0] : undefined
}

/** Every AST node under `node`, depth first. */
export function walk(node: unknown, visit: (n: AstNode) => void): void {
  if (Array.isArray(node)) {
    for (const child of node) walk(child, visit)
    return
  }
  if (node === null || typeof node !== 'object') return
  const n = node as AstNode
  if (typeof n.type === 'string') visit(n)
  for (const [key, value] of Object.entries(n)) {
    if (key === 'loc') continue
    if (value && typeof value === 'object') walk(value, visit)
  }
}

const TOKENS: Record<string, string> = {
  CLOSE: '}}',
  CLOSE_UNESCAPED: '}}}',
  CLOSE_RAW_BLOCK: '}}}}',
  CLOSE_SEXPR: ')',
  OPEN_SEXPR: '(',
  OPEN: '{{',
  OPEN_BLOCK: '{{#',
  OPEN_ENDBLOCK: '{{/',
  OPEN_PARTIAL: '{{>',
  OPEN_INVERSE: '{{^',
  INVERSE: '{{else}}',
  OPEN_INVERSE_CHAIN: '{{else …}}',
  ID: 'a name',
  STRING: 'a quoted string',
  NUMBER: 'a number',
  DATA: 'an @name',
  SEP: '.',
  EQUALS: '=',
  EOF: 'the end of the text',
  INVALID: 'something unreadable (an unclosed quote or a stray character)',
  CONTENT: 'text',
}

/** Where a `{{` is not closed by `}}`, or a quote inside `{{…}}` is not closed: the usual syntax mistakes. */
function unclosed(template: string): {line: number; message: string} | undefined {
  const lineAt = (i: number) => template.slice(0, i).split('\n').length
  for (let i = template.indexOf('{{'); i >= 0; i = template.indexOf('{{', i + 2)) {
    if (template[i - 1] === '\\') continue
    const close = template.indexOf('}}', i + 2)
    const next = template.indexOf('{{', i + 2)
    const start = template.slice(i, i + 24).split('\n')[0]
    if (close < 0 || (next >= 0 && next < close && !template.startsWith('{{{', i) && !template.startsWith('{{!', i)))
      return {line: lineAt(i), message: `${start.trimEnd()} is not closed with }}`}
    const inside = template.slice(i + 2, close)
    if (
      !inside.startsWith('!') &&
      ((inside.match(/"/g)?.length ?? 0) % 2 === 1 || (inside.match(/'/g)?.length ?? 0) % 2 === 1)
    )
      return {line: lineAt(i), message: `a quote in ${template.slice(i, close + 2)} is not closed`}
    i = close
  }
  return undefined
}

/** Handlebars' parser error, in words: what was found where, and what to write instead. */
function syntaxError(error: Error & {lineNumber?: number}, template: string): TemplateError {
  const message = error.message
  const mismatch = /^(\S+) doesn't match (\S+)/.exec(message)
  if (mismatch) {
    return new TemplateError(
      `{{/${mismatch[2]}}} closes {{#${mismatch[1]}}}`,
      error.lineNumber ?? 1,
      `close {{#${mismatch[1]} …}} with {{/${mismatch[1]}}}, and every block in the order it was opened`,
    )
  }
  const line = Number(/line (\d+)/.exec(message)?.[1] ?? error.lineNumber ?? 1)
  const lines = message.split('\n')
  const got = /got '([A-Z_]+)'/.exec(message)?.[1]
  const expecting = [...(/Expecting (.*), got/.exec(message)?.[1] ?? '').matchAll(/'([A-Z_]+)'/g)].map((m) => m[1])
  const excerpt = lines.length >= 3 ? lines[1] : ''
  const at = lines.length >= 3 ? lines[2].indexOf('^') : -1
  const near = at >= 0 ? excerpt.slice(Math.max(0, at - 16), at + 8) : excerpt
  if (got === 'EOF' && expecting.includes('OPEN_ENDBLOCK'))
    return new TemplateError(
      'a {{#…}} block is never closed',
      line,
      'close every {{#NAME …}} with {{/NAME}}, e.g. {{#each locations}}…{{/each}}',
    )
  const open = got === 'INVALID' || got === 'EOF' || got === 'OPEN' ? unclosed(template) : undefined
  if (open) return new TemplateError(open.message, open.line, TEMPLATE_HINT)
  if (got === 'INVERSE' || got === 'OPEN_INVERSE_CHAIN')
    return new TemplateError(
      '{{else}} outside a block',
      line,
      '{{else}} goes inside {{#if …}}…{{/if}} or {{#each …}}…{{/each}}',
    )
  if (got === 'OPEN_ENDBLOCK')
    return new TemplateError(
      `{{/…}} closes no block, at "${near}"`,
      line,
      'remove it, or open the block with {{#NAME …}}',
    )
  if (!got) return new TemplateError(`syntax error: ${lines[0]}`, line, TEMPLATE_HINT)
  const wanted = ['CLOSE_UNESCAPED', 'CLOSE_SEXPR', 'CLOSE', 'ID'].find((t) => expecting.includes(t))
  return new TemplateError(
    `syntax error: unexpected ${TOKENS[got] ?? got} at "${near}"${wanted ? ` (expected ${TOKENS[wanted]})` : ''}`,
    line,
    TEMPLATE_HINT,
  )
}

export const TEMPLATE_HINT =
  'write {{NAME}}, {{HELPER "ARG"}} or {{#each LIST}}…{{/each}}, with every {{ closed by }} and every quote closed; a literal {{ is written \\{{'

// Many params share one template text (service defaults, `{{output "db" "port"}}` on every app):
// what handlebars parses is parsed once. Bounded so a long-running config server does not grow
// without limit. What the scanner reads is not kept: reading it again costs less than keeping it.
const CACHE_LIMIT = 10_000
const astCache = new Map<string, unknown>()

/**
 * ASTs parsed before: nodeset's own templates, parsed by handlebars when nodeset was built (see
 * operations/load.ts). parseTemplate answers them for these very texts without loading handlebars.
 */
export function rememberParsed(entries: ReadonlyArray<readonly [string, unknown]>): void {
  for (const [template, ast] of entries) if (astCache.size < CACHE_LIMIT) astCache.set(template, ast)
}

/** Parse a template; a syntax error becomes a TemplateError with the template's line. The AST may be shared: read it only. */
export function parseTemplate(template: string): unknown {
  const scanned = scanPlain(template)
  if (scanned) return scanned
  const cached = astCache.get(template)
  if (cached) return cached
  const ast = parseWithHandlebars(template)
  if (astCache.size >= CACHE_LIMIT) astCache.clear()
  astCache.set(template, ast)
  return ast
}

function parseWithHandlebars(template: string): unknown {
  try {
    return handlebarsParse()(template)
  } catch (error) {
    throw syntaxError(error as Error, template)
  }
}
