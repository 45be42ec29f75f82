import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {plainParamRefs} from '../../src/plan/param-refs.js'
import {checkedTemplate, paramScope, refsInAst} from '../../src/plan/template.js'

/** What the parser and the full check in a param's scope make of a text: its problems and references. */
function parsed(text: string) {
  const {problems, ast} = checkedTemplate(text, {root: paramScope()})
  return {problems, refs: ast && problems.length === 0 ? refsInAst(ast) : []}
}

// Pieces that build both plain params and every near miss: other helpers, spacing, arities, escapes,
// braces and quotes inside literals, `}}}`, line breaks inside and outside the mustaches.
const literal = fc
  .array(fc.constantFrom('db', 'service:mysql', 'a b', '{', '}', '}}', '"', '\\', '\t', '\u2028', '\ud800', 'é', ''), {
    maxLength: 3,
  })
  .map((parts) => parts.join(''))
const name = fc.constantFrom('ip', 'private_ip', 'hostname', 'fact', 'output', 'nodes', 'name', 'ipx', 'each', '')
const gap = fc.constantFrom(' ', '  ', '', '\n', '\t', ' ~')
const mustache = fc
  .tuple(
    fc.constantFrom('{{', '{{', '{{{', '{{~', '{{#', '{{!'),
    name,
    fc.array(fc.tuple(gap, literal), {maxLength: 4}),
    gap,
    fc.constantFrom('}}', '}}', '}}}', '~}}', '}'),
  )
  .map(
    ([open, helper, args, last, close]) => open + helper + args.map(([g, a]) => `${g}"${a}"`).join('') + last + close,
  )
const content = fc.constantFrom('x', ' ', '\n', '\r\n', '\r', '://', '\\', '{', '}', '}}', ':3306/app')
const text = fc.array(fc.oneof(mustache, content), {maxLength: 5}).map((parts) => parts.join(''))

describe('plainParamRefs', () => {
  it('reads what the parser and the check read, whenever it reads a text at all', () => {
    let read = 0
    fc.assert(
      fc.property(text, (t) => {
        const plain = plainParamRefs(t)
        if (plain === undefined) return
        read++
        expect({problems: [], refs: plain}).toStrictEqual(parsed(t))
      }),
      {numRuns: 20_000},
    )
    // The pieces make plain params often enough for the comparison to mean something.
    expect(read).toBeGreaterThan(2_000)
  })

  it('reads the params a deployment is made of', () => {
    const texts = [
      '{{output "db" "port"}}',
      'jdbc:mysql://{{ip "service:mysql"}}:3306/app',
      '{{output "db" "mysql" "password"}}',
      '{{fact "db" "sshd_port"}}\n{{hostname "app1"}}',
      '{{output  "db"   "port"}}',
      'no template here',
    ]
    for (const t of texts) expect(plainParamRefs(t)).toStrictEqual(parsed(t).refs)
    expect(plainParamRefs('{{output  "db"   "port"}}')?.[0].expression).toBe('{{output "db" "port"}}')
  })

  it('declines what it does not read, for the parser to read or refuse', () => {
    for (const t of [
      '{{nodes "app"}}',
      '{{output "db"}}',
      '{{ip "db"}}}',
      '{{{ip "db"}}}',
      '\\{{ip "db"}}',
      '{{ip "d\\"b"}}',
      '{{ip "db" }}x\r',
      '{{~ip "db"}}',
      '{{ip "db"',
      '{{name}}',
      '{{constructor "x"}}',
    ])
      expect(plainParamRefs(t), t).toBeUndefined()
  })
})
