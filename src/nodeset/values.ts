/**
 * The kinds of value a nodeset file holds (booleans, durations, sizes, host names) and, for each,
 * what a wrong one is told: the value echoed back and what is allowed.
 */
import type {SizeSpec} from '../core/source.js'

/**
 * `SERVICE.PARAM = {{input}}`: the param is given when the deployment is launched (`--set`, `--values`,
 * or asked on a terminal), never written in the file. It is the whole value, braces' blanks allowed.
 */
export const INPUT_MARKER = '{{input}}'
const INPUT_WHOLE = /^\{\{~?\s*input\s*~?\}\}$/
const INPUT_ANYWHERE = /\{\{~?\s*[#^/]?\s*input\b/

/** The value leaves its param to launch time. */
export function isInputMarker(text: string): boolean {
  return INPUT_WHOLE.test(text.trim())
}

/** The value uses `{{input}}` as part of something else (`pw-{{input}}`, `{{input "x"}}`), which means nothing. */
export function misusesInput(text: string): boolean {
  return !isInputMarker(text) && INPUT_ANYWHERE.test(text)
}

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i

export function isValidHostname(name: string): boolean {
  return name.length <= 253 && name.split('.').every((label) => HOST_LABEL.test(label))
}

export function parseBool(text: string): boolean | undefined {
  const t = text.trim().toLowerCase()
  if (['true', 'yes', 'on', '1'].includes(t)) return true
  if (['false', 'no', 'off', '0'].includes(t)) return false
  return undefined
}

/** `600`, `30s`, `10m`, `1h` → seconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)\s*(s|m|h)?$/.exec(text.trim())
  if (!m) return undefined
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1)
}

const AMOUNT = /^(\d+(?:\.\d+)?)\s*(MB|M|GB|G|GiB|MiB)?$/i

/** `id X`, `name X`, `ram 256MB` / `ram 2GB`, or a bare type name (`t3.small`); a bare amount is not a size. */
export function parseSize(text: string): SizeSpec | undefined {
  const words = text.trim().split(/\s+/)
  if (words.length === 1 && words[0] && !AMOUNT.test(words[0])) return {kind: 'name', value: words[0]}
  if (words.length !== 2) return undefined
  const [kind, value] = words
  if (kind === 'id' || kind === 'name') return {kind, value}
  if (kind === 'ram') {
    const m = AMOUNT.exec(value)
    if (!m) return undefined
    const gb = /^g/i.test(m[2] ?? 'MB')
    return {kind: 'ram', megabytes: Math.round(Number(m[1]) * (gb ? 1024 : 1))}
  }
  return undefined
}

export interface ValueProblem {
  message: string
  hint: string
}

export function boolProblem(key: string, text: string): ValueProblem {
  return {
    message: `${key} must be true or false, not "${text}"`,
    hint: 'write true or false (yes/no, on/off and 1/0 are read too)',
  }
}

export function durationProblem(key: string, text: string): ValueProblem {
  return {
    message: `${key} "${text}" is not a duration`,
    hint: 'write seconds (900) or a whole number with s, m or h: 90s, 15m, 1h',
  }
}

export function sizeProblem(text: string): ValueProblem {
  const amount = text.replace(/\s+/g, '')
  if (AMOUNT.test(amount)) {
    const unit = /[a-z]$/i.test(amount) ? amount : `${amount}MB`
    return {message: `size "${text}" does not say what kind of size it is`, hint: `write "ram ${unit}" for the memory`}
  }
  return {message: `size "${text}" is not understood`, hint: 'write "id X", "name X" or "ram 256MB" / "ram 2GB"'}
}
