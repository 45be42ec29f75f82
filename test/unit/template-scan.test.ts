import fc from 'fast-check'
import Handlebars from 'handlebars'
import {describe, expect, it} from 'vitest'
import {
  checkTemplate,
  extractRefs,
  paramScope,
  parseTemplate,
  scriptScope,
  TemplateError,
} from '../../src/plan/template.js'
import {checkParsed} from '../../src/plan/template-check.js'
import {refFromCall, type TemplateRef} from '../../src/plan/template-refs.js'
import {type AstNode, walk} from '../../src/plan/template-syntax.js'
import {scanPlain} from '../../src/plan/template-scan.js'

/** Own fields only, undefined ones kept, prototypes dropped: handlebars' SourceLocation is a class. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
}

function handlebarsAst(template: string): {ast?: unknown; error?: string} {
  try {
    return {ast: plain(Handlebars.parse(template))}
  } catch (error) {
    return {error: (error as Error).message}
  }
}

/** The references as found before the scanner: every call in handlebars' own AST, walked generically. */
function refsByHandlebars(template: string): {refs?: TemplateRef[]; error?: string} {
  const refs: TemplateRef[] = []
  try {
    walk(Handlebars.parse(template), (n: AstNode) => {
      if (n.type !== 'MustacheStatement' && n.type !== 'SubExpression' && n.type !== 'BlockStatement') return
      if (n.path?.type !== 'PathExpression' || typeof n.path.original !== 'string') return
      const ref = refFromCall(n, n.path.original)
      if (ref) refs.push(ref)
    })
  } catch (error) {
    return {error: (error as Error).message}
  }
  return {refs}
}

function refsByScan(template: string): {refs?: TemplateRef[]; error?: string} {
  try {
    return {refs: extractRefs(template)}
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error
    return {error: error.message}
  }
}

// A grammar of templates around the plain kind: its words, and the near misses handlebars reads otherwise.
const word = fc.constantFrom(
  'output',
  'ip',
  'private_ip',
  'hostname',
  'fact',
  'nodes',
  'params',
  'port',
  'x',
  'this',
  '..',
  '.',
  'true',
  'false',
  'null',
  'undefined',
  'nullish',
  'as',
  'else',
  'elsewhere',
  'each',
  '1',
  '-2.5',
  '01',
  '1.5',
  '-',
  '-x',
  'a-b',
  'service:mysql',
  '$x',
  'é',
  '\u0001',
)
const separator = fc.constantFrom('.', '/', '..', './', '../')
const path = fc
  .tuple(word, fc.array(fc.tuple(separator, word), {maxLength: 3}))
  .map(([head, rest]) => head + rest.map(([s, w]) => s + w).join(''))
const stringChars = fc.constantFrom('a', ' ', 'db', 'service:mysql', '}}', '{{', "'", '"', '\\', '\n', 'é', '(', ')')
const quoted = fc
  .tuple(fc.constantFrom('"', "'"), fc.array(stringChars, {maxLength: 4}), fc.nat(9))
  .map(([q, chars, unclosed]) => q + chars.filter((c) => c !== q).join('') + (unclosed === 0 ? '' : q))
const space = fc.constantFrom(' ', '  ', '\n', '\t', '\u00a0', '\u2028', '')
const odd = fc.constantFrom(
  '=',
  'k=v',
  '(',
  ')',
  '(nodes "x")',
  '|',
  'as |x|',
  '@index',
  '@root.x',
  '[a b]',
  '~',
  '&',
  '}',
  '{',
)
const token = fc.oneof({weight: 6, arbitrary: path}, {weight: 3, arbitrary: quoted}, {weight: 1, arbitrary: odd})
const opening = fc.constantFrom(
  '{{',
  '{{',
  '{{',
  '{{',
  '{{',
  '{{ ',
  '{{ ',
  '{{~',
  '{{{',
  '{{&',
  '{{#',
  '{{/',
  '{{^',
  '{{>',
  '{{!',
  '{{*',
  '\\{{',
  '\\\\{{',
)
const closing = fc.constantFrom('}}', '}}', '}}', '}}', '}}', ' }}', '~}}', '}}}', '}', '')
const mustache = fc
  .tuple(opening, fc.array(fc.tuple(space, token), {minLength: 0, maxLength: 4}), space, closing)
  .map(([open, tokens, after, close]) => open + tokens.map(([s, t]) => s + t).join('') + after + close)
const special = fc.constantFrom(
  '{{!-- a comment --}}',
  '{{! note }}',
  '{{#if x}}yes{{else}}no{{/if}}',
  '{{#each (nodes "app") as |n|}}{{n.name}}{{/each}}',
  '{{{triple}}}',
  '{{> part}}',
  '{{{{raw}}}}{{x}}{{{{/raw}}}}',
  '{{~x~}}',
  '{{else}}',
  '\\{{x}}',
  '{{',
  '}}',
  '{{lookup x "k"}}',
  '{{ip (nodes "x")}}',
)
const text = fc
  .array(fc.constantFrom('a', ' ', '\n', '\\', '{', '}', '"', '\t', 'é', 'x\n  y', '\r\n', '\0'), {maxLength: 4})
  .map((parts) => parts.join(''))
const template = fc
  .array(fc.oneof({weight: 3, arbitrary: text}, {weight: 5, arbitrary: mustache}, {weight: 1, arbitrary: special}), {
    maxLength: 6,
  })
  .map((parts) => parts.join(''))

// Templates of the plain kind only: the scanner must read every one itself.
const plainString = fc
  .array(fc.constantFrom('a', ' ', 'db', 'service:mysql', '}}', '{{', '\n', 'é', "'"), {maxLength: 4})
  .map((chars) => `"${chars.join('')}"`)
const plainPath = fc
  .tuple(
    fc.constantFrom('', 'this.', '../', './', '../../'),
    fc.array(fc.constantFrom('params', 'x', 'port', 'facts', 'a-b', 'n1', 'nullish'), {minLength: 1, maxLength: 3}),
  )
  .map(([prefix, parts]) => prefix + parts.join('.'))
const plainParam = fc.oneof(
  plainString,
  plainPath,
  fc.constantFrom('1', '-2.5', 'true', 'false', 'null', 'undefined', '0', '42'),
)
const plainMustache = fc
  .tuple(
    fc.constantFrom('output', 'ip', 'fact', 'nodes', 'hostname', 'params.port', 'x', 'this', '.'),
    fc.array(plainParam, {maxLength: 3}),
    fc.constantFrom(' ', '', '\n  '),
  )
  .map(([name, params, pad]) => `{{${pad}${[name, ...params].join(' ')}${pad}}}`)
const plainText = fc.array(fc.constantFrom('a', ' ', '\n', '}', '{', 'port=', '\\'), {maxLength: 4}).map((parts) =>
  parts
    .join('')
    .replace(/\{+/g, '{')
    .replace(/[\\{]+$/, '')
    .replace(/^\}+/, ''),
)
const plainTemplate = fc
  .array(fc.tuple(plainText, plainMustache), {minLength: 1, maxLength: 4})
  .chain((pairs) => plainText.map((tail) => pairs.map(([t, m]) => t + m).join('') + tail))

describe('the plain-template scanner', () => {
  it('builds the very AST handlebars builds, or leaves the template to handlebars', () => {
    let scanned = 0
    fc.assert(
      fc.property(template, (t) => {
        const ast = scanPlain(t)
        if (ast === undefined) return
        scanned++
        expect(plain(ast)).toStrictEqual(handlebarsAst(t).ast)
      }),
      {numRuns: 8000},
    )
    // The grammar reaches the plain kind often enough for the comparison to mean something (about 360
    // times in 8,000 runs, 330-390 in five: a bound of 300 failed about one run in a hundred).
    expect(scanned).toBeGreaterThan(200)
  })

  it('reads every template of text and plain mustaches itself', () => {
    fc.assert(
      fc.property(plainTemplate, (t) => {
        const ast = scanPlain(t)
        expect(ast, t).toBeDefined()
        expect(plain(ast)).toStrictEqual(handlebarsAst(t).ast)
      }),
      {numRuns: 3000},
    )
  })

  it('finds the same references, and refuses the same calls, as the walk over handlebars AST', () => {
    fc.assert(
      fc.property(fc.oneof(template, plainTemplate), (t) => {
        if (handlebarsAst(t).error !== undefined) return
        expect(refsByScan(t)).toStrictEqual(refsByHandlebars(t))
      }),
      {numRuns: 3000},
    )
  })

  it('gives a template the same problems whichever parser read it', () => {
    const scopes = [paramScope(), scriptScope('web', ['port', 'x'])]
    fc.assert(
      fc.property(fc.oneof(template, plainTemplate), fc.constantFrom(...scopes), (t, root) => {
        if (!t.includes('{{') || handlebarsAst(t).error !== undefined) return
        const byHandlebars = checkParsed(Handlebars.parse(t) as unknown as AstNode, {root})
        expect(checkTemplate(t, {root})).toStrictEqual(byHandlebars)
      }),
      {numRuns: 2000},
    )
  })

  it('reads the usual param values itself', () => {
    for (const t of [
      '{{output "db" "port"}}',
      '{{ip "service:db"}}',
      '{{params.x}}',
      'mysql://{{output "db" "mysql" "user"}}@{{private_ip "service:mysql"}}:{{output "db" "port"}}/app',
      '{{ hostname  "app1.example.com" }}\n{{facts.sshd_port}}',
      '{{../x}} {{this}} {{.}} {{./y}} {{x 1 -2.5 true false null undefined}}',
      "{{fact 'db' 'sshd_port'}}",
      '{{output "db"   "a b"}}{{ip "}}"}}',
      'no mustache at all',
    ])
      expect(scanPlain(t), t).toBeDefined()
  })

  it('leaves every other kind of template to handlebars', () => {
    for (const t of [
      '{{#each (nodes "app")}}{{ip}}{{/each}}',
      '{{#each list as |item|}}{{item}}{{/each}}',
      '{{ip (nodes "x")}}',
      '{{! a comment }}',
      '{{!-- a comment --}}',
      '{{{params.x}}}',
      '{{&params.x}}',
      '{{~params.x}}',
      '{{params.x~}}',
      '{{> partial}}',
      '{{{{raw}}}}{{x}}{{{{/raw}}}}',
      '\\{{params.x}}',
      '\\\\{{params.x}}',
      '{{else}}',
      '{{ else }}',
      '{{^}}',
      '{{lookup x key=1}}',
      '{{@index}}',
      '{{[a b]}}',
      '{{ip "a\\"b"}}',
      '{{ip "unclosed}}',
      '{{ip "db"',
      '{{ip',
      '{{',
      '{{}}',
      '{{ip "db"}}}',
      '{{a.1}}',
      '{{a.true}}',
      '{{a/../b}}',
      '{{a .b}}',
      '{{a/ b}}',
      'line\r\n{{ip "db"}}',
      'nul\0{{ip "db"}}',
      'sep\u2028{{ip "db"}}',
      '',
    ])
      expect(scanPlain(t), JSON.stringify(t)).toBeUndefined()
  })

  it('keeps handlebars errors, in words, for what it leaves to handlebars', () => {
    expect(() => parseTemplate('{{ip "db"')).toThrow(TemplateError)
    expect(() => parseTemplate('{{ip "unclosed}}')).toThrow(/quote/)
    expect(() => parseTemplate('{{a.1}}')).toThrow(TemplateError)
    expect(refsByScan('{{output db "port"}}').error).toMatch(/must be quoted strings/)
    expect(refsByScan('{{#each (nodes "app")}}{{output "db" "port"}}{{/each}}').refs?.map((r) => r.target)).toEqual([
      'app',
      'db',
    ])
  })
})
