import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {Interpolator} from '../../src/nodeset/interpolate.js'
import type {Merged, MergedValue} from '../../src/nodeset/merge.js'

const value = (text: string, line = 1): MergedValue => ({value: text, source: {file: 'f.conf', line}})
const sections = (entries: Record<string, Record<string, string>>): Merged =>
  new Map(
    Object.entries(entries).map(([name, values]) => [
      name,
      {
        name,
        source: {file: 'f.conf', line: 1},
        values: new Map(Object.entries(values).map(([k, v], i) => [k, value(v, i + 2)])),
      },
    ]),
  )

const literal = fc.stringMatching(/^[a-z0-9 ./:_-]{0,8}$/)
const name = fc.constantFrom('A', 'B', 'HOME', 'PATH_X')

type Piece =
  | {kind: 'text'; text: string}
  | {kind: 'env'; name: string; explicit: boolean}
  | {kind: 'default'; name: string; fallback: string}
  | {kind: 'dollar'}
const piece: fc.Arbitrary<Piece> = fc.oneof(
  literal.map((text) => ({kind: 'text' as const, text})),
  fc.record({kind: fc.constant('env' as const), name, explicit: fc.boolean()}),
  fc.record({kind: fc.constant('default' as const), name, fallback: literal}),
  fc.constant({kind: 'dollar' as const}),
)

describe('parse-time interpolation', () => {
  it('agrees with a direct substitution for any mix of text, ${VAR}, ${env:VAR}, ${VAR:-default} and $$', () => {
    fc.assert(
      fc.property(fc.array(piece, {maxLength: 8}), fc.dictionary(name, literal), (pieces, env) => {
        const source = pieces
          .map((p) =>
            p.kind === 'text'
              ? p.text
              : p.kind === 'dollar'
                ? '$$'
                : p.kind === 'env'
                  ? `\${${p.explicit ? 'env:' : ''}${p.name}}`
                  : `\${${p.name}:-${p.fallback}}`,
          )
          .join('')
        const unset = pieces.some((p) => p.kind === 'env' && !env[p.name])
        const expected = pieces
          .map((p) =>
            p.kind === 'text'
              ? p.text
              : p.kind === 'dollar'
                ? '$'
                : p.kind === 'env'
                  ? (env[p.name] ?? '')
                  : env[p.name] || p.fallback,
          )
          .join('')
        const interpolator = new Interpolator(new Map(), env)
        const result = interpolator.resolve(value(source))
        if (unset) expect(interpolator.problems.length).toBeGreaterThan(0)
        else {
          expect(interpolator.problems).toEqual([])
          expect(result).toBe(expected)
        }
      }),
      {numRuns: 400},
    )
  })

  it('follows ${section:key} chains of any length and refuses every loop with file:line', () => {
    fc.assert(
      fc.property(fc.integer({min: 1, max: 12}), fc.boolean(), (length, loop) => {
        const values: Record<string, string> = {}
        for (let i = 0; i < length; i++)
          values[`k${i}`] = i === length - 1 ? (loop ? '${s:k0}' : 'end') : `<\${s:k${i + 1}}>`
        const merged = sections({s: values})
        const interpolator = new Interpolator(merged, {})
        const result = interpolator.resolve(merged.get('s')!.values.get('k0')!)
        if (loop) {
          expect(
            interpolator.problems.some(
              (p) => p.message.startsWith('interpolation loop') && p.source?.file === 'f.conf',
            ),
          ).toBe(true)
        } else {
          expect(interpolator.problems).toEqual([])
          expect(result).toBe('<'.repeat(length - 1) + 'end' + '>'.repeat(length - 1))
        }
      }),
    )
  })

  it('names what is missing', () => {
    const interpolator = new Interpolator(sections({general: {name: 'x'}}), {})
    interpolator.resolve(value('${general:nmae} ${genral:name}', 7))
    expect(interpolator.problems.map((p) => `${p.source?.line}: ${p.message} (${p.hint})`)).toEqual([
      '7: ${general:nmae} refers to a value that is not set ([general] has no nmae; did you mean name?)',
      '7: ${genral:name} refers to a value that is not set (no section [genral]; did you mean [general]?)',
    ])
  })
})
