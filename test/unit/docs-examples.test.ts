/**
 * Every complete nodeset file the README and docs/*.md show plans as written: an ```ini block with a
 * [general] or role section is one; a block marked ```ini fragment is deliberately partial, and
 * app.ini or [provider]-only blocks are not nodeset files.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {DiagnosticsError, formatDiagnostic} from '../../src/core/diagnostics.js'
import {readTextFile} from '../../src/nodeset/files.js'
import {readNodeset} from '../../src/nodeset/read.js'
import {planNodeset} from '../../src/plan/plan.js'

const ROOT = path.resolve(__dirname, '../..')
const COMPLETE = /^\[(general|appserver|balancer|service:[^\]]+|role:[^\]]+)\]/m

interface Block {
  doc: string
  line: number
  info: string
  text: string
}

function iniBlocks(doc: string): Block[] {
  const blocks: Block[] = []
  const lines = fs.readFileSync(doc, 'utf8').split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*(.*)$/.exec(lines[i])
    if (!open) continue
    const end = lines.findIndex((l, j) => j > i && l.startsWith('```'))
    if (end < 0) break
    if (open[1] === 'ini')
      blocks.push({doc, line: i + 2, info: open[2], text: lines.slice(i + 1, end).join('\n') + '\n'})
    i = end
  }
  return blocks
}

const docs = [
  path.join(ROOT, 'README.md'),
  ...fs.readdirSync(path.join(ROOT, 'docs')).map((f) => path.join(ROOT, 'docs', f)),
]
  .filter((f) => f.endsWith('.md'))
  .sort()
const complete = docs.flatMap(iniBlocks).filter((b) => COMPLETE.test(b.text) && !/\bfragment\b/.test(b.info))

describe('the nodeset files in the docs', () => {
  it('finds them (the README shows at least one)', () => {
    expect(complete.filter((b) => b.doc.endsWith('README.md')).length).toBeGreaterThanOrEqual(1)
  })

  it.each(complete.map((b) => [`${path.relative(ROOT, b.doc)}:${b.line}`, b] as const))(
    '%s plans as written',
    (_, b) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-docs-'))
      const file = path.join(dir, `${path.basename(b.doc, '.md')}-${b.line}.conf`)
      fs.writeFileSync(file, b.text)
      let problems: string[]
      try {
        // Only what the block says: no ~/.nodeset.conf, no variables from this shell.
        const {nodeset, catalog} = readNodeset(file, {readFile: readTextFile, env: {HOME: dir}})
        problems = planNodeset(nodeset, catalog).analysis.problems.map(formatDiagnostic)
      } catch (error) {
        if (!(error instanceof DiagnosticsError)) throw error
        problems = error.diagnostics.map(formatDiagnostic)
      }
      // Point at the doc's own lines: block line N is doc line b.line + N - 1.
      const shown = problems.map((p) =>
        p.replace(
          new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:(\\d+)`, 'g'),
          (_m, n) => `${path.relative(ROOT, b.doc)}:${b.line + Number(n) - 1}`,
        ),
      )
      expect(shown).toEqual([])
    },
  )
})
