import fs from 'node:fs'
import path from 'node:path'
import Handlebars from 'handlebars'
import {describe, expect, it} from 'vitest'
import {TEMPLATES_DIR} from '../../src/services/catalog.js'
import {checkTemplate, extractRefs, parseTemplate, rememberParsed, scriptScope} from '../../src/plan/template.js'
import {scanPlain} from '../../src/plan/template-scan.js'

/** nodeset's own templates that handlebars parses (the scanner reads the others): what the build stores. */
function builtTemplates(): string[] {
  return fs
    .readdirSync(TEMPLATES_DIR, {recursive: true, withFileTypes: true})
    .filter((e) => e.isFile() && e.name.endsWith('.hbs'))
    .map((e) => fs.readFileSync(path.join(e.parentPath, e.name), 'utf8'))
    .filter((text) => text.includes('{{') && !scanPlain(text))
}

/** What a template's check and references say, in a scope that lacks most names (so there are problems, with lines). */
function readings(text: string): unknown {
  return {
    strict: checkTemplate(text, {root: scriptScope('x', [])}),
    usual: checkTemplate(text, {root: scriptScope('appserver', ['port', 'user'])}),
    refs: extractRefs(text),
  }
}

describe("nodeset's own templates parsed when it was built", () => {
  it('read back from JSON, check and give references exactly as handlebars parsing them', () => {
    const texts = builtTemplates()
    expect(texts.length).toBeGreaterThanOrEqual(2)
    const before = texts.map(readings)
    const stored = JSON.parse(JSON.stringify(texts.map((text) => [text, Handlebars.parse(text)]))) as Array<
      [string, unknown]
    >
    rememberParsed(stored)
    texts.forEach((text, i) => {
      expect(parseTemplate(text)).toBe(stored[i][1])
      expect(readings(text)).toEqual(before[i])
    })
  })

  it('are the very texts: an edited template is parsed again', () => {
    const [text] = builtTemplates()
    rememberParsed([[text, {type: 'Program', body: []}]])
    const edited = text + '{{#if name}}x{{/if}}\n'
    expect(parseTemplate(edited)).not.toEqual({type: 'Program', body: []})
    expect(JSON.parse(JSON.stringify(parseTemplate(edited)))).toEqual(
      JSON.parse(JSON.stringify(Handlebars.parse(edited))),
    )
    rememberParsed([[text, Handlebars.parse(text)]])
  })
})
