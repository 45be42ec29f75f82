/**
 * What every part of reading a nodeset file shares: values as interpolated text, the problems found
 * (a value made by `+=`/`-=` also names the line it changed), the secrets seen, and the file I/O.
 */
import {type Diagnostic, didYouMean} from '../core/diagnostics.js'
import {formatSource, type Source} from '../core/source.js'
import {isSecretName} from '../services/catalog.js'
import type {ReaderIO} from './files.js'
import type {Interpolator} from './interpolate.js'
import type {MergedSection, MergedValue} from './merge.js'
import type {Value} from './types.js'
import {isInputMarker} from './values.js'

/** Keys whose value is a list of lines or words: `+=` and `-=` change them; every other key takes one value. */
const LIST_KEYS = ['locations', 'hostnames', 'services', 'services_dir', 'hosts', 'security_groups', 'image_owners']

export class Reader {
  readonly problems: Diagnostic[] = []
  readonly secrets = new Set<string>()

  constructor(
    private readonly interpolator: Interpolator,
    readonly io: ReaderIO,
  ) {}

  text(v: MergedValue): string {
    return this.interpolator.resolve(v).trim()
  }

  value(v: MergedValue): Value {
    return {value: this.text(v), source: v.source}
  }

  /** A problem at a source, or at a value: a value made by `+=`/`-=` also names the line it changed. */
  problem(message: string, at: Source | MergedValue | undefined, hint?: string): void {
    if (at && 'value' in at) {
      if (this.reported.has(at)) return
      const details = at.inherited ? [`${at.op} changes the value set at ${formatSource(at.inherited)}`] : undefined
      this.problems.push({message, source: at.source, hint, ...(details ? {details} : {})})
      return
    }
    this.problems.push({message, source: at, hint})
  }

  /** Values already refused (a `+=` on a one-value key): no second problem for them. */
  private readonly reported = new Set<MergedValue>()

  unknownKeys(section: MergedSection, known: string[], isParam?: (key: string) => boolean): void {
    for (const [key, v] of section.values) {
      if (v.inherited && !LIST_KEYS.includes(key) && !key.includes('.') && known.includes(key)) {
        this.problem(
          `${key} ${v.op} changes the value set at ${formatSource(v.inherited)}, but ${key} takes one value`,
          v.source,
          `write "${key} = …" to replace the inherited value`,
        )
        this.reported.add(v)
      }
      if (known.includes(key) || isParam?.(key)) continue
      const guess = didYouMean(key, known)
      this.problem(
        `unknown key "${key}" in [${section.name}]`,
        v.source,
        guess ? `did you mean "${guess}"?` : `known keys: ${known.join(', ')}`,
      )
    }
  }

  noteSecrets(section: MergedSection): void {
    for (const [key, v] of section.values) {
      if (key === 'secret' || (isSecretName(key) && key !== 'secret_file')) {
        const text = this.text(v)
        if (text && !isInputMarker(text)) this.secrets.add(text)
      }
    }
  }
}
