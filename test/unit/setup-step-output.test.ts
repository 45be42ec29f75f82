/** StepOutput against every way a step command's output can be cut into chunks. */
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {markerLine} from '../../src/setup/commands.js'
import {StepOutput} from '../../src/setup/step-output.js'

const MARKER = 'nodeset-unchanged-0123456789abcdef'
const HASH = 'a'.repeat(64)

/** Cut text at the given fractions of its length. */
function cut(text: string, at: number[]): string[] {
  const points = [...new Set(at.map((f) => Math.floor(f * text.length)))].sort((a, b) => a - b)
  const chunks: string[] = []
  let from = 0
  for (const p of points) {
    chunks.push(text.slice(from, p))
    from = p
  }
  chunks.push(text.slice(from))
  return chunks.filter(Boolean)
}

function read(chunks: string[], readRecorded: boolean) {
  const logged: string[] = []
  const events: string[] = []
  const out = new StepOutput(MARKER, readRecorded, {
    recorded: () => events.push('recorded'),
    running: () => events.push('running'),
    script: (text) => logged.push(text),
  })
  for (const chunk of chunks) out.push(chunk)
  out.end()
  return {out, logged, events}
}

// Script output that may look like the markers, in part or all but the end of a line.
const scriptText = fc.array(
  fc.oneof(fc.string(), fc.constantFrom('\n', 'nodeset-unchanged-', `${MARKER}:`, `${MARKER}:outputs`, 'password=x\n')),
  {maxLength: 8},
)
const fractions = fc.array(fc.double({min: 0, max: 1, noNaN: true}), {maxLength: 6})

describe('StepOutput', () => {
  it('hands out exactly the script output, in whole lines, and keeps the outputs and the listing apart', () => {
    fc.assert(
      fc.property(scriptText, fc.string(), fc.boolean(), fc.boolean(), fractions, (parts, outputs, ok, header, at) => {
        const script = parts.join('')
        // The marker is random per run: a script cannot print its lines, only look like them in part.
        fc.pre(!script.startsWith(markerLine(MARKER, 'unchanged').slice(0, -1)))
        fc.pre(!script.includes(markerLine(MARKER, 'outputs')))
        const listing = header ? `base ${HASH} ${Buffer.from('k=v\n').toString('base64')}\n` : ''
        const text =
          (header ? listing + markerLine(MARKER, 'recorded') : '') +
          script +
          (ok ? markerLine(MARKER, 'outputs') + outputs : '')
        const {out, logged, events} = read(cut(text, at), header)
        expect(logged.join('')).toBe(script)
        expect(out.outputs).toBe(ok ? outputs : undefined)
        for (const text of logged.slice(0, -1)) expect(text.endsWith('\n')).toBe(true)
        expect(out.unchanged).toBe(false)
        expect(out.running).toBe(script.length > 0 || ok)
        if (header) {
          expect(events[0]).toBe('recorded')
          expect(out.recorded).toEqual(new Map([['base', {hash: HASH, outputs: 'k=v\n'}]]))
        }
      }),
      {numRuns: 500},
    )
  })

  it('an unchanged step: its recorded outputs, nothing logged, never running', () => {
    fc.assert(
      fc.property(fc.string(), fc.boolean(), fractions, (outputs, header, at) => {
        const text = (header ? markerLine(MARKER, 'recorded') : '') + markerLine(MARKER, 'unchanged') + outputs
        const {out, logged, events} = read(cut(text, at), header)
        expect(out.unchanged).toBe(true)
        expect(out.outputs).toBe(outputs)
        expect(logged).toEqual([])
        expect(events).toEqual(header ? ['recorded'] : [])
      }),
    )
  })

  it('never logs a listing cut short, whose lines hold recorded outputs', () => {
    const {out, logged} = read([`base ${HASH} ${Buffer.from('password=hunter2\n').toString('base64')}\n`], true)
    expect(logged).toEqual([])
    expect(out.recorded).toBeUndefined()
    expect(out.running).toBe(false)
  })

  it('hands out a line that grows past its limit, but never a part of the outputs line', () => {
    const long = 'x'.repeat(70_000)
    const {logged, out} = read([long, `${MARKER}:out`, 'puts\nk=v\n'], false)
    expect(logged.join('')).toBe(long)
    expect(logged.length).toBeGreaterThan(1)
    expect(out.outputs).toBe('k=v\n')
  })
})
