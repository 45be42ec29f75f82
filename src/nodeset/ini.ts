/**
 * A line-keeping INI reader for nodeset files. The `ini` package loses line numbers and does not
 * know ConfigParser's indented continuation lines (the seed's `locations =` and `hostnames =`), and
 * every error we report must carry file:line, so sections and entries are read here, as data.
 *
 * Comments: a line whose first non-blank character is `#` or `;` is a comment, and so is the rest of
 * a line from a `#` or `;` that starts the value or follows whitespace (`nodes = 2   # two`). Such a
 * character is kept when it follows another one (`app.py#main`), when it is written `\#` or `\;`,
 * inside quotes that open a word and close on the same line (`"a # b"`, quotes kept) and inside
 * `{{…}}` or `${…}`.
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

const SECTION = /^\[\s*([^\]]+?)\s*\]$/
const ENTRY = /^([A-Za-z0-9_.:-]+)\s*(\+=|-=|=)\s?(.*)$/
const COMMENT = /^\s*[#;]/

/** The text of a line without its inline comment, `\#` and `\;` unescaped; trailing blanks removed. */
export function stripComment(text: string): string {
  let out = ''
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '\\' && (text[i + 1] === '#' || text[i + 1] === ';')) {
      out += text[++i]
      continue
    }
    if ((c === '#' || c === ';') && (i === 0 || /\s/.test(text[i - 1]))) break
    const quote = (c === '"' || c === "'") && (i === 0 || /[\s=(,:[]/.test(text[i - 1]))
    const close = quote ? c : text.startsWith('{{', i) ? '}}' : text.startsWith('${', i) ? '}' : ''
    const end = close ? text.indexOf(close, i + (close === c ? 1 : 2)) : -1
    if (end >= 0) {
      out += text.slice(i, end + close.length)
      i = end + close.length - 1
      continue
    }
    out += c
  }
  return out.trimEnd()
}

/**
 * Parse one file's text. Continuation lines (indented) extend the previous value, joined by newlines.
 * With `verbatim`, a value is kept as written (only whole-line comments): for values files, where a
 * password may hold ` #`.
 */
export function parseIni(text: string, file: string, opts: {verbatim?: boolean} = {}): RawFile {
  const strip = opts.verbatim ? (t: string) => t.trimEnd() : stripComment
  const sections: RawSection[] = []
  const problems: Diagnostic[] = []
  const seen = new Map<string, number>()
  let section: RawSection | undefined
  let last: RawEntry | undefined
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  lines.forEach((raw, i) => {
    const line = i + 1
    if (raw.trim() === '' || COMMENT.test(raw)) return
    if (/^\s/.test(raw)) {
      if (last) {
        const piece = strip(raw.trim())
        if (piece !== '') last.value = last.value === '' ? piece : `${last.value}\n${piece}`
      } else {
        problems.push({
          message: `indented line "${raw.trim()}" continues no value`,
          source: {file, line},
          hint: 'start keys and sections at the beginning of the line; indent only the continuation lines of a multi-line value',
        })
      }
      return
    }
    const header = SECTION.exec(stripComment(raw))
    if (header) {
      const first = seen.get(header[1])
      if (first !== undefined)
        problems.push({
          message: `[${header[1]}] appears twice in this file (first at line ${first})`,
          source: {file, line},
          hint: `put every key of [${header[1]}] under one header; to change an inherited section, use extends`,
        })
      else seen.set(header[1], line)
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
    last = {key: entry[1], op: entry[2] as Operator, value: strip(entry[3]).trim(), file, line}
    section.entries.push(last)
  })
  return {file, sections, problems}
}
