/**
 * A fast reading of the templates most params are: text and plain mustaches such as
 * `{{output "db" "port"}}`, `{{ip "service:mysql"}}` or `{{params.port}}`. It follows handlebars'
 * lexer rule by rule for that subset and builds the very AST handlebars' parser builds (same nodes,
 * fields and locations), so every reader of the AST sees no difference. Anything else is left to
 * handlebars: it answers undefined for blocks, comments, partials, sub-expressions, name=value
 * arguments, `{{{…}}}`, `{{&…}}`, `~`, `@data`, `[segments]`, `\{{`, escapes in strings, and for
 * every text handlebars would refuse, so its error messages stay its own.
 */

export interface Position {
  line: number
  column: number
}

export interface SourceLoc {
  source: undefined
  start: Position
  end: Position
}

interface Literal {
  type: 'StringLiteral' | 'NumberLiteral' | 'BooleanLiteral' | 'NullLiteral' | 'UndefinedLiteral'
  value: unknown
  original: unknown
  loc: SourceLoc
}

interface Path {
  type: 'PathExpression'
  data: false
  depth: number
  parts: string[]
  original: string
  loc: SourceLoc
}

type Expression = Literal | Path

interface Mustache {
  type: 'MustacheStatement'
  path: Expression
  params: Expression[]
  hash: undefined
  escaped: true
  strip: {open: false; close: false}
  loc: SourceLoc
}

interface Content {
  type: 'ContentStatement'
  original: string
  value: string
  loc: SourceLoc
}

export interface ScannedProgram {
  type: 'Program'
  body: Array<Content | Mustache>
  strip: Record<string, never>
  loc: SourceLoc
}

const NUMBER = /-?[0-9]+(?:\.[0-9]+)?/y
const KEYWORDS = ['true', 'false', 'undefined', 'null'] as const

/** Characters this scanner leaves to handlebars wherever they are: NUL, and line breaks other than \n. */
const UNSUPPORTED = /[\0\r\u2028\u2029]/

const BACKSLASH = 0x5c
const QUOTE = 0x22
const APOSTROPHE = 0x27
const DOT = 0x2e
const SLASH = 0x2f
const MINUS = 0x2d
const CLOSE_BRACE = 0x7d

/** JavaScript's `\s`, as handlebars' lexer means it. */
function isSpace(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d)
  if (c < 0xa0) return false
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  )
}

/** A character of an ID: anything but whitespace and !"#%&'()*+,./;<=>@[\]^`{|}~ (handlebars' ID rule). */
function isIdChar(c: number): boolean {
  if (isSpace(c)) return false
  if (c >= 0x7f || c < 0x21) return true
  return !(
    c <= 0x23 ||
    (c >= 0x25 && c <= 0x2c) ||
    c === DOT ||
    c === SLASH ||
    (c >= 0x3b && c <= 0x3e) ||
    c === 0x40 ||
    (c >= 0x5b && c <= 0x5e) ||
    c === 0x60 ||
    c >= 0x7b
  )
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39
const isWordChar = (c: number): boolean =>
  isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f

/** Lines and columns as handlebars counts them (1-based lines, 0-based columns), for offsets met in order. */
class Lines {
  private offset = 0
  private line = 1
  private lineStart = 0

  constructor(private readonly text: string) {}

  at(offset: number): Position {
    const text = this.text
    for (let i = text.indexOf('\n', this.offset); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
      this.line++
      this.lineStart = i + 1
    }
    this.offset = offset
    return {line: this.line, column: offset - this.lineStart}
  }

  loc(start: number, end: number): SourceLoc {
    return {source: undefined, start: this.at(start), end: this.at(end)}
  }
}

/** Why scanning stopped: the template is not of the plain kind, handlebars reads it. */
const NOT_PLAIN = Symbol('not plain')

/** The AST handlebars would build for a template of text and plain mustaches, or undefined for any other. */
export function scanPlain(template: string): ScannedProgram | undefined {
  if (UNSUPPORTED.test(template)) return undefined
  try {
    return new Scanner(template).program()
  } catch (error) {
    if (error === NOT_PLAIN) return undefined
    throw error
  }
}

class Scanner {
  private readonly lines: Lines
  private at = 0

  constructor(private readonly text: string) {
    this.lines = new Lines(text)
  }

  program(): ScannedProgram | undefined {
    const text = this.text
    const body: Array<Content | Mustache> = []
    while (this.at < text.length) {
      const open = text.indexOf('{{', this.at)
      const end = open < 0 ? text.length : open
      if (end > this.at) {
        if (open >= 0 && text.charCodeAt(open - 1) === BACKSLASH) throw NOT_PLAIN
        const value = text.slice(this.at, end)
        body.push({type: 'ContentStatement', original: value, value, loc: this.lines.loc(this.at, end)})
        this.at = end
      }
      if (open >= 0) body.push(this.mustache())
    }
    if (body.length === 0) return undefined
    const first = body[0].loc
    const last = body[body.length - 1].loc
    const loc: SourceLoc = {
      source: undefined,
      start: {line: first.start.line, column: first.start.column},
      end: {line: last.end.line, column: last.end.column},
    }
    return {type: 'Program', body, strip: {}, loc}
  }

  /** `{{` at the current offset, up to its `}}`. */
  private mustache(): Mustache {
    const text = this.text
    const start = this.at
    const next = text[start + 2]
    // `{{{`, `{{~`, `{{>`, `{{#`, `{{/`, `{{^`, `{{&`, `{{!`, `{{*`, and `{{else`: not a plain mustache.
    if (next === undefined || '{~>#/^&!*'.includes(next)) throw NOT_PLAIN
    let i = start + 2
    while (isSpace(text.charCodeAt(i))) i++
    if (text.startsWith('else', i) && !isWordChar(text.charCodeAt(i + 4))) throw NOT_PLAIN
    this.at = start + 2
    const startPosition = this.lines.at(start)
    const expressions: Expression[] = []
    for (;;) {
      this.skipSpaces()
      if (this.closes()) break
      expressions.push(this.expression())
    }
    const end = this.at
    if (expressions.length === 0) throw NOT_PLAIN
    const [path, ...params] = expressions
    return {
      type: 'MustacheStatement',
      path,
      params,
      hash: undefined,
      escaped: true,
      strip: {open: false, close: false},
      loc: {source: undefined, start: startPosition, end: this.lines.at(end)},
    }
  }

  private skipSpaces(): void {
    while (isSpace(this.text.charCodeAt(this.at))) this.at++
  }

  /** At `}}` (not `}}}`): step over it. */
  private closes(): boolean {
    const text = this.text
    if (text.charCodeAt(this.at) !== CLOSE_BRACE) return false
    if (text.charCodeAt(this.at + 1) !== CLOSE_BRACE || text.charCodeAt(this.at + 2) === CLOSE_BRACE) throw NOT_PLAIN
    this.at += 2
    return true
  }

  /** A literal or a path, as the lexer's rules (in their order) and the grammar's helperName read it. */
  private expression(): Expression {
    const text = this.text
    const start = this.at
    const c = text.charCodeAt(start)
    if (c === QUOTE || c === APOSTROPHE) return this.string(c)
    if (c === MINUS || isDigit(c)) {
      NUMBER.lastIndex = start
      const number = NUMBER.exec(text)?.[0]
      if (number !== undefined && this.endsLiteral(start + number.length)) {
        this.at = start + number.length
        const value = Number(number)
        return {type: 'NumberLiteral', value, original: value, loc: this.lines.loc(start, this.at)}
      }
    }
    const keyword = this.keyword(start)
    if (keyword) return keyword
    return this.path()
  }

  /** What may follow a number, true, false, null or undefined for the lexer to read it as one: `}` or a space (`~` and `)` are not plain). */
  private endsLiteral(offset: number): boolean {
    const c = this.text.charCodeAt(offset)
    return c === CLOSE_BRACE || isSpace(c)
  }

  private keyword(start: number): Literal | undefined {
    const text = this.text
    for (const word of KEYWORDS) {
      if (!text.startsWith(word, start) || !this.endsLiteral(start + word.length)) continue
      this.at = start + word.length
      const loc = this.lines.loc(start, this.at)
      if (word === 'null') return {type: 'NullLiteral', original: null, value: null, loc}
      if (word === 'undefined') return {type: 'UndefinedLiteral', original: undefined, value: undefined, loc}
      const value = word === 'true'
      return {type: 'BooleanLiteral', value, original: value, loc}
    }
    return undefined
  }

  /** A quoted string without backslashes (an escaped quote is left to handlebars). */
  private string(quote: number): Literal {
    const text = this.text
    const start = this.at
    const close = text.indexOf(quote === QUOTE ? '"' : "'", start + 1)
    if (close < 0) throw NOT_PLAIN
    const value = text.slice(start + 1, close)
    if (value.includes('\\')) throw NOT_PLAIN
    this.at = close + 1
    return {type: 'StringLiteral', value, original: value, loc: this.lines.loc(start, this.at)}
  }

  /** Segments joined by `.` or `/`, with `this`, `.` and `..` only in front (preparePath's rules). */
  private path(): Path {
    const text = this.text
    const start = this.at
    const parts: string[] = []
    let depth = 0
    for (;;) {
      const segment = this.segment()
      if (segment === '..' || segment === '.' || segment === 'this') {
        if (parts.length > 0) throw NOT_PLAIN
        if (segment === '..') depth++
      } else parts.push(segment)
      const c = text.charCodeAt(this.at)
      if (c === SLASH) this.at++
      else if (c === DOT && !this.dotIsSegment(this.at)) this.at++
      else break
    }
    const original = text.slice(start, this.at)
    return {type: 'PathExpression', data: false, depth, parts, original, loc: this.lines.loc(start, this.at)}
  }

  /** `..` is always a segment; `.` is one when followed by what ends an ID; else `.` separates. */
  private dotIsSegment(offset: number): boolean {
    const next = this.text.charCodeAt(offset + 1)
    return endsId(next)
  }

  /** One ID: `..`, `.`, or a run of ID characters that the lexer does not read as a number or keyword. */
  private segment(): string {
    const text = this.text
    const start = this.at
    const c = text.charCodeAt(start)
    if (c === DOT) {
      if (text.charCodeAt(start + 1) === DOT) {
        this.at = start + 2
        return this.followedByIdEnd('..')
      }
      if (!endsId(text.charCodeAt(start + 1))) throw NOT_PLAIN
      this.at = start + 1
      return '.'
    }
    let end = start
    while (end < text.length && isIdChar(text.charCodeAt(end))) end++
    if (end === start) throw NOT_PLAIN
    const id = text.slice(start, end)
    // After a separator the lexer still tries numbers and keywords first: `a.1` or `a.true` is a syntax error.
    if (this.endsLiteral(end) && (/^-?[0-9]+(?:\.[0-9]+)?$/.test(id) || (KEYWORDS as readonly string[]).includes(id)))
      throw NOT_PLAIN
    this.at = end
    return this.followedByIdEnd(id)
  }

  /** The lexer reads an ID only before `=~}\s/.)|`; the plain subset takes `}`, a space, `.` or `/`. */
  private followedByIdEnd(id: string): string {
    const c = this.text.charCodeAt(this.at)
    if (c === CLOSE_BRACE || c === DOT || c === SLASH || isSpace(c)) return id
    throw NOT_PLAIN
  }
}

/** The characters handlebars' ID rule accepts after an ID (a `.` there is a segment `.`, not a separator). */
function endsId(c: number): boolean {
  return (
    c === 0x3d || c === 0x7e || c === CLOSE_BRACE || isSpace(c) || c === SLASH || c === DOT || c === 0x29 || c === 0x7c
  )
}
