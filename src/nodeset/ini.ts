/**
 * A line-keeping INI reader for nodeset files. The `ini` package loses line numbers and does not
 * know ConfigParser's indented continuation lines (the seed's `locations =` and `hostnames =`), and
 * every error we report must carry file:line, so sections and entries are read here, as data.
 */
import type {Diagnostic} from '../core/diagnostics.js'

export type Operator = '=' | '+=' | '-='

export interface RawEntry {
  key: string
  op: Operator
  value: string
  file: string
  line: number
}

export interface RawSection {
  name: string
  file: string
  line: number
  entries: RawEntry[]
}

export interface RawFile {
  file: string
  sections: RawSection[]
  problems: Diagnostic[]
}

const SECTION = /^\[\s*([^\]]+?)\s*\]\s*$/
const ENTRY = /^([A-Za-z0-9_.:-]+)\s*(\+=|-=|=)\s?(.*)$/
const COMMENT = /^\s*[#;]/

/** Parse one file's text. Continuation lines (indented) extend the previous value, joined by newlines. */
export function parseIni(text: string, file: string): RawFile {
  const sections: RawSection[] = []
  const problems: Diagnostic[] = []
  let section: RawSection | undefined
  let last: RawEntry | undefined
  const lines = text.split(/\r?\n/)
  lines.forEach((raw, i) => {
    const line = i + 1
    if (raw.trim() === '' || COMMENT.test(raw)) return
    if (/^\s/.test(raw)) {
      if (last) {
        const piece = raw.trim()
        last.value = last.value === '' ? piece : `${last.value}\n${piece}`
      } else {
        problems.push({
          message: `indented line "${raw.trim()}" continues no value`,
          source: {file, line},
          hint: 'start keys and sections at the beginning of the line; indent only the continuation lines of a multi-line value',
        })
      }
      return
    }
    const header = SECTION.exec(raw)
    if (header) {
      section = {name: header[1], file, line, entries: []}
      sections.push(section)
      last = undefined
      return
    }
    const entry = ENTRY.exec(raw)
    if (!entry) {
      last = undefined
      problems.push({
        message: `cannot read "${raw.trim()}"`,
        source: {file, line},
        hint: 'write "key = value", a "[section]" header, or a "# comment"',
      })
      return
    }
    if (!section) {
      last = undefined
      problems.push({
        message: `"${entry[1]}" is set before any [section]`,
        source: {file, line},
        hint: 'put it under a section such as [general]',
      })
      return
    }
    last = {key: entry[1], op: entry[2] as Operator, value: entry[3].trim(), file, line}
    section.entries.push(last)
  })
  return {file, sections, problems}
}
