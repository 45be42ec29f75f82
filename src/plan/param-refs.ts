/**
 * The references of a param in one pass over its characters, for the shape nearly every param has:
 * text and calls of nodeset's helpers with quoted literal arguments (`{{output "db" "port"}}`,
 * `jdbc://{{ip "service:mysql"}}:3306`). Such a text always passes the check in a param's scope, so
 * its references are all there is to know; the check of a deployment reads 100,000 of them without
 * building an AST. Anything else (`nodes`, which prints a list; other names, blocks, escapes,
 * whitespace control, a wrong number of arguments, a literal with a quote, brace or control
 * character, a `\r`…) is declined, and the param goes through the parser and the check.
 */
import {sameChars} from './name-table.js'
import type {TemplateRef} from './template-refs.js'

/** The helpers read here, by number, with the numbers of arguments each takes. */
const PLAIN_HELPERS = ['ip', 'private_ip', 'hostname', 'fact', 'output'] as const
const FACT_CALL = 3
const OUTPUT_CALL = 4

/**
 * What the scan writes of each call, as numbers at `CALL_FIELDS * c + field` of the scratch array:
 * the helper's number, the count of arguments, the line, where the mustache starts and ends, whether
 * it is written as its expression is (one space between words, none inside the braces), and the
 * start and end of each argument's characters.
 */
export const CALL_FIELDS = 12
const HELPER = 0
const ARGS = 1
const LINE = 2
const START = 3
const END = 4
const CANONICAL = 5
/** The start of argument `a` is at field ARG + 2a, its end at ARG + 2a + 1. */
const ARG = 6

const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const QUOTE = 0x22
const SPACE = 0x20
const NEWLINE = 0x0a
const BACKSLASH = 0x5c
const CARRIAGE_RETURN = 0x0d

/**
 * Scan `text` for the plain shape, writing each call into `calls` (reused between texts: nothing is
 * allocated for a text that has it). The number of calls (0 for text without `{{`), or -1: declined.
 */
export function scanPlainParam(text: string, calls: number[]): number {
  let count = 0
  let line = 1
  let at = 0
  const end = text.length
  while (at < end) {
    const c = text.charCodeAt(at)
    if (c === BACKSLASH || c === CARRIAGE_RETURN) return -1
    if (c === NEWLINE) line++
    if (c === OPEN_BRACE && text.charCodeAt(at + 1) === OPEN_BRACE) {
      const next = scanCall(text, at, line, calls, count * CALL_FIELDS)
      if (next < 0) return -1
      count++
      at = next
      continue
    }
    at++
  }
  return count
}

/** One `{{helper "a" …}}` from `start` (at its `{{`), written at `base` of `calls`: where the text goes on, or -1. */
function scanCall(text: string, start: number, line: number, calls: number[], base: number): number {
  const helper = helperAt(text, start + 2)
  if (helper < 0) return -1
  let at = start + 2 + PLAIN_HELPERS[helper].length
  let canonical = 1
  let args = 0
  for (;;) {
    const spaces = at
    while (text.charCodeAt(at) === SPACE) at++
    if (text.charCodeAt(at) === CLOSE_BRACE && text.charCodeAt(at + 1) === CLOSE_BRACE) {
      if (at !== spaces) canonical = 0
      break
    }
    if (at === spaces || text.charCodeAt(at) !== QUOTE || args === 3) return -1
    if (at - spaces !== 1) canonical = 0
    const literalStart = at + 1
    at = literalStart
    for (;;) {
      const c = text.charCodeAt(at)
      if (c === QUOTE) break
      // NaN (the end of the text) fails every comparison: declined like a control character.
      if (!(c >= SPACE) || c === BACKSLASH || c === OPEN_BRACE || c === CLOSE_BRACE || isSurrogate(c)) return -1
      at++
    }
    calls[base + ARG + 2 * args] = literalStart
    calls[base + ARG + 2 * args + 1] = at
    args++
    at++
  }
  // `}}}` closes a `{{{`: the parser refuses it here.
  if (text.charCodeAt(at + 2) === CLOSE_BRACE || !takes(helper, args)) return -1
  calls[base + HELPER] = helper
  calls[base + ARGS] = args
  calls[base + LINE] = line
  calls[base + START] = start
  calls[base + END] = at + 2
  calls[base + CANONICAL] = canonical
  return at + 2
}

/** Whether helper number `helper` takes `args` arguments: the fact helpers one, fact two, output two or three. */
function takes(helper: number, args: number): boolean {
  if (helper < FACT_CALL) return args === 1
  return helper === FACT_CALL ? args === 2 : args === 2 || args === 3
}

/** The number of the helper whose name is at `at` (followed by no other letter of a name), or -1. */
function helperAt(text: string, at: number): number {
  // Each helper's name starts with a letter of its own.
  let h: number
  switch (text.charCodeAt(at)) {
    case 0x69: // i
      h = 0
      break
    case 0x70: // p
      h = 1
      break
    case 0x68: // h
      h = 2
      break
    case 0x66: // f
      h = 3
      break
    case 0x6f: // o
      h = 4
      break
    default:
      return -1
  }
  const name = PLAIN_HELPERS[h]
  for (let k = 1; k < name.length; k++) if (text.charCodeAt(at + k) !== name.charCodeAt(k)) return -1
  return isNameChar(text.charCodeAt(at + name.length)) ? -1 : h
}

/** Argument `a` of the call written at `base`. */
function argOf(text: string, calls: number[], base: number, a: number): string {
  return text.slice(calls[base + ARG + 2 * a], calls[base + ARG + 2 * a + 1])
}

/** Where the call written at `base` names its target: the start of its first argument (its end: targetEnd). */
export function targetStart(calls: number[], base: number): number {
  return calls[base + ARG]
}

export function targetEnd(calls: number[], base: number): number {
  return calls[base + ARG + 1]
}

/** Whether the call written at `base` asks for an output (not a fact). */
export function isOutputCall(calls: number[], base: number): boolean {
  return calls[base + HELPER] === OUTPUT_CALL
}

/** Whether an output call names the service too (`{{output "db" "mysql" "port"}}`: three arguments). */
export function namesService(calls: number[], base: number): boolean {
  return calls[base + ARGS] === 3
}

/** Whether argument `a` of the call written at `base` is `name`, read where it is written. */
function argIs(text: string, calls: number[], base: number, a: number, name: string): boolean {
  const start = calls[base + ARG + 2 * a]
  return name.length === calls[base + ARG + 2 * a + 1] - start && sameChars(name, text, start)
}

/** Whether the service an output call names (its second of three arguments) is `name`. */
export function serviceIs(text: string, calls: number[], base: number, name: string): boolean {
  return argIs(text, calls, base, 1, name)
}

/** Whether one of `keys` is the key an output call asks for (its last argument). */
export function keyIsOneOf(text: string, calls: number[], base: number, keys: readonly string[]): boolean {
  const last = calls[base + ARGS] - 1
  for (let k = 0; k < keys.length; k++) if (argIs(text, calls, base, last, keys[k])) return true
  return false
}

/** The key a call reads: the fact helpers' own name, fact's second argument, output's last. */
function keyOf(text: string, calls: number[], base: number): string {
  const helper = calls[base + HELPER]
  if (helper < FACT_CALL) return PLAIN_HELPERS[helper]
  return argOf(text, calls, base, calls[base + ARGS] - 1)
}

/** The call written at `base` as the reference the parser's reading makes of it. */
export function refOfCall(text: string, calls: number[], base: number): TemplateRef {
  const helper = calls[base + HELPER]
  const args = calls[base + ARGS]
  const line = calls[base + LINE]
  const words: string[] = [PLAIN_HELPERS[helper]]
  for (let a = 0; a < args; a++) words.push(`"${argOf(text, calls, base, a)}"`)
  const expression = calls[base + CANONICAL]
    ? text.slice(calls[base + START], calls[base + END])
    : `{{${words.join(' ')}}}`
  const target = argOf(text, calls, base, 0)
  const key = keyOf(text, calls, base)
  if (helper === OUTPUT_CALL && args === 3) {
    const service = argOf(text, calls, base, 1)
    return {kind: 'output', target, service, key, all: false, line, expression}
  }
  return {kind: helper === OUTPUT_CALL ? 'output' : 'fact', target, key, all: false, line, expression}
}

/** The references of `text` when it has the plain shape (none for text without `{{`), else undefined. */
export function plainParamRefs(text: string): TemplateRef[] | undefined {
  const calls: number[] = []
  const count = scanPlainParam(text, calls)
  if (count < 0) return undefined
  const refs: TemplateRef[] = []
  for (let c = 0; c < count; c++) refs.push(refOfCall(text, calls, c * CALL_FIELDS))
  return refs
}

function isNameChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || c === 0x5f
}

function isSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdfff
}
