/**
 * Parse-time interpolation, `${…}`, resolved when the file is read (node-time `{{…}}` is left alone):
 *   ${HOME}, ${env:VAR}      an environment variable; an error when unset
 *   ${VAR:-default}           …or the default when unset or empty
 *   ${section:key}            another value of the file (buildout style), itself interpolated
 *   $$                        a literal `$`
 */
import {type Diagnostic, didYouMean} from '../core/diagnostics.js'
import type {Source} from '../core/source.js'
import type {Merged, MergedValue} from './merge.js'

const REFERENCE = /\$\$|\$\{([^}]*)\}/g
const ENV_NAME = /^(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s

type Lookup =
  {kind: 'env'; name: string; fallback?: string; explicit: boolean} | {kind: 'value'; section: string; key: string}

export function parseReference(body: string): Lookup | undefined {
  const env = ENV_NAME.exec(body)
  if (env) return {kind: 'env', name: env[1], fallback: env[2], explicit: body.startsWith('env:')}
  const colon = body.lastIndexOf(':')
  if (colon > 0 && colon < body.length - 1)
    return {kind: 'value', section: body.slice(0, colon), key: body.slice(colon + 1)}
  return undefined
}

export class Interpolator {
  readonly problems: Diagnostic[] = []
  private readonly done = new Map<MergedValue, string>()

  constructor(
    private readonly sections: Merged,
    private readonly env: Record<string, string | undefined>,
  ) {}

  /** The interpolated text of a value; problems are collected, never thrown. */
  resolve(value: MergedValue, stack: Array<{label: string; value: MergedValue}> = []): string {
    const cached = this.done.get(value)
    if (cached !== undefined) return cached
    const result = value.value.replace(REFERENCE, (whole, body: string | undefined) => {
      if (whole === '$$') return '$'
      return this.expand(body ?? '', value.source, stack.length ? stack : [{label: '', value}])
    })
    this.done.set(value, result)
    return result
  }

  private expand(body: string, source: Source, stack: Array<{label: string; value: MergedValue}>): string {
    const lookup = parseReference(body)
    if (!lookup) {
      this.problems.push({
        message: `\${${body}} is not a reference`,
        source,
        hint: 'write ${VAR}, ${env:VAR}, ${VAR:-default} or ${section:key}; $$ for a literal $',
      })
      return ''
    }
    if (lookup.kind === 'env') {
      const value = this.env[lookup.name]
      if (value !== undefined && value !== '') return value
      if (lookup.fallback !== undefined) return lookup.fallback
      this.problems.push({
        message: `\${${body}}: the environment variable ${lookup.name} is not set`,
        source,
        hint: `set it (export ${lookup.name}=…) or give a default: \${${lookup.name}:-value}`,
      })
      return ''
    }
    const section = this.sections.get(lookup.section)
    const target = section?.values.get(lookup.key)
    if (!target) {
      const hint = !section
        ? `no section [${lookup.section}]${didYouMean(lookup.section, this.sections.keys()) ? `; did you mean [${didYouMean(lookup.section, this.sections.keys())}]?` : ''}`
        : `[${lookup.section}] has no ${lookup.key}${didYouMean(lookup.key, section.values.keys()) ? `; did you mean ${didYouMean(lookup.key, section.values.keys())}?` : ''}`
      this.problems.push({message: `\${${body}} refers to a value that is not set`, source, hint})
      return ''
    }
    const label = `\${${body}}`
    if (stack.some((s) => s.value === target)) {
      const chain = [...stack.slice(1).map((s) => s.label), label].join(' → ')
      this.problems.push({
        message: `interpolation loop: ${chain}`,
        source,
        hint: 'a value cannot refer back to itself through other values',
      })
      return ''
    }
    if (this.done.has(target)) return this.done.get(target)!
    const text = target.value.replace(REFERENCE, (whole, inner: string | undefined) =>
      whole === '$$' ? '$' : this.expand(inner ?? '', target.source, [...stack, {label, value: target}]),
    )
    this.done.set(target, text)
    return text
  }
}
