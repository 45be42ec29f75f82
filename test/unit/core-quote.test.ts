import {execFileSync} from 'node:child_process'
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {shellQuote} from '../../src/core/quote.js'

/** What a real sh (dash on Debian) makes of `printf %s WORD`. */
const printed = (word: string): string => execFileSync('sh', ['-c', `printf %s ${word}`], {encoding: 'utf8'})

// Anything sh can carry in a word: every code point but NUL.
const text = fc.string({unit: 'binary', maxLength: 40}).filter((s) => !s.includes('\0'))

describe('shellQuote', () => {
  it('leaves a plainly safe word bare and single-quotes everything else', () => {
    expect(shellQuote('/var/lib/nodeset/agent.sh')).toBe('/var/lib/nodeset/agent.sh')
    expect(shellQuote('')).toBe("''")
    expect(shellQuote("it's")).toBe("'it'\\''s'")
    expect(shellQuote('$(reboot)')).toBe("'$(reboot)'")
    expect(shellQuote('~root')).toBe("'~root'")
  })

  it('always single-quotes when asked, for files read back with sed', () => {
    expect(shellQuote('foobar', {always: true})).toBe("'foobar'")
    expect(shellQuote('', {always: true})).toBe("''")
    expect(shellQuote("a'b", {always: true})).toBe("'a'\\''b'")
  })

  it('gives sh back exactly its input, whatever the input', () => {
    fc.assert(
      fc.property(text, fc.boolean(), (value, always) => {
        expect(printed(always ? shellQuote(value, {always}) : shellQuote(value))).toBe(value)
      }),
      {numRuns: 200},
    )
  })
})
