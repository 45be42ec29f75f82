/** The bounds on merged facts and outputs: refused exactly when over, whether or not the text is parsed to count. */
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {HttpError} from '../../src/configserver/errors.js'
import {checkBounds} from '../../src/configserver/writes.js'

/** The 413 checkBounds throws, or undefined. */
function refusal(text: string, keyLimit: number, byteLimit: number): HttpError | undefined {
  try {
    checkBounds(text, 'the facts of n', {limit: keyLimit, name: 'keys'}, {limit: byteLimit, name: 'bytes'})
    return undefined
  } catch (error) {
    if (!(error instanceof HttpError)) throw error
    return error
  }
}

describe('checkBounds', () => {
  it('refuses a text exactly when it has more keys than the limit (property, the shortest keys included)', () => {
    // Keys of zero to two characters and one-character values: texts at the bound of 5 bytes a key.
    const objectArb = fc.dictionary(
      fc.string({maxLength: 2}),
      fc.oneof(fc.constant(0), fc.constant('x'), fc.constant({})),
      {
        maxKeys: 40,
      },
    )
    fc.assert(
      fc.property(objectArb, fc.integer({min: 0, max: 30}), fc.boolean(), (object, limit, spaced) => {
        const text = spaced ? JSON.stringify(object, null, 1) : JSON.stringify(object)
        const keys = Object.keys(object).length
        const error = refusal(text, limit, 1 << 20)
        if (keys > limit) {
          expect(error?.statusCode).toBe(413)
          expect(error?.message).toBe(`the facts of n would have ${keys} keys; the limit is ${limit}`)
        } else expect(error).toBeUndefined()
      }),
      {numRuns: 2000},
    )
  })

  it('counts the keys of the shortest texts one key over the limit: the empty key and one-character keys', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({maxLength: 1}), {minLength: 1, maxLength: 90}), (keys) => {
        const text = JSON.stringify(Object.fromEntries(keys.map((key) => [key, 0])))
        expect(refusal(text, keys.length - 1, 1 << 20)?.statusCode).toBe(413)
        expect(refusal(text, keys.length, 1 << 20)).toBeUndefined()
      }),
      {numRuns: 500},
    )
  })

  it('refuses a text over the byte limit, naming it', () => {
    const text = JSON.stringify({a: 'x'.repeat(100)})
    expect(refusal(text, 10, Buffer.byteLength(text))).toBeUndefined()
    expect(refusal(text, 10, Buffer.byteLength(text) - 1)?.statusCode).toBe(413)
  })
})
