import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {NameTable} from '../../src/plan/name-table.js'

describe('NameTable', () => {
  it('finds every name it holds, as a string and inside another text, and no other', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({maxLength: 6}), {maxLength: 60}),
        fc.string({maxLength: 6}),
        (names, other) => {
          // Sized for the names exactly: the table is as full as it gets, and probes wrap around.
          const table = new NameTable(names.length)
          names.forEach((name, e) => expect(table.findOrAdd(name)).toBe(e))
          names.forEach((name, e) => {
            expect(table.findOrAdd(name)).toBe(e)
            expect(table.find(name)).toBe(e)
            const text = `{{x "${name}"}}`
            expect(table.findRun(text, 5, 5 + name.length)).toBe(e)
          })
          expect(table.size).toBe(names.length)
          expect(table.find(other)).toBe(names.indexOf(other))
          expect(table.findRun(`a${other}b`, 1, 1 + other.length)).toBe(names.indexOf(other))
        },
      ),
      {numRuns: 500},
    )
  })

  it('tells apart names of one length that land on the same slots', () => {
    // 10,000 three-letter names in 32,768 slots: many probe past each other's slots.
    const names = Array.from({length: 10_000}, (_, i) => i.toString(36).padStart(3, '0'))
    const table = new NameTable(names.length)
    for (const name of names) table.findOrAdd(name)
    names.forEach((name, e) => expect(table.find(name)).toBe(e))
    expect(table.find('zzzz')).toBe(-1)
  })

  it('refuses more names than it was sized for', () => {
    const table = new NameTable(1)
    for (let i = 0; i < 8; i++) table.findOrAdd(`n${i}`)
    expect(() => table.findOrAdd('one too many')).toThrow(/sized too small/)
  })
})
