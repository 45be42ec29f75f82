/**
 * `extends = base.conf other.conf` (paths relative to the including file, nested, later wins) and
 * buildout's `key +=` / `key -=`. Reading goes through a small I/O interface so this stays testable
 * with in-memory files.
 */
import path from 'node:path'
import type {Diagnostic} from '../core/diagnostics.js'
import type {Source} from '../core/source.js'
import {parseIni, type RawEntry} from './ini.js'

export interface ReaderIO {
  /** The file's text, or undefined when it does not exist. */
  readFile(file: string): string | undefined
  env: Record<string, string | undefined>
}

export interface MergedValue {
  value: string
  source: Source
}

export interface MergedSection {
  name: string
  source: Source
  values: Map<string, MergedValue>
}

export type Merged = Map<string, MergedSection>

export interface MergeResult {
  sections: Merged
  problems: Diagnostic[]
  /** Every file read, the root first. */
  files: string[]
}

function splitWords(value: string): string[] {
  return value.split(/\s+/).filter(Boolean)
}

function applyEntry(target: MergedSection, entry: RawEntry): void {
  const source = {file: entry.file, line: entry.line}
  const previous = target.values.get(entry.key)
  if (entry.op === '=' || !previous) {
    if (entry.op === '-=') return
    target.values.set(entry.key, {value: entry.value, source})
    return
  }
  const lines = previous.value.split('\n').filter((l) => l.trim() !== '')
  if (entry.op === '+=') {
    const added = entry.value.split('\n').filter((l) => l.trim() !== '')
    target.values.set(entry.key, {value: [...lines, ...added].join('\n'), source})
  } else {
    const removed = new Set(entry.value.split('\n').map((l) => l.trim()))
    target.values.set(entry.key, {value: lines.filter((l) => !removed.has(l.trim())).join('\n'), source})
  }
}

function mergeInto(into: Merged, from: Merged): void {
  for (const [name, section] of from) {
    const target = into.get(name)
    if (!target) {
      into.set(name, {name, source: section.source, values: new Map(section.values)})
      continue
    }
    for (const [key, value] of section.values) target.values.set(key, value)
  }
}

/** Read a nodeset file and everything it extends into one set of sections. */
export function readMerged(file: string, io: ReaderIO): MergeResult {
  const problems: Diagnostic[] = []
  const files: string[] = []
  const load = (current: string, stack: string[], from?: Source): Merged => {
    const text = io.readFile(current)
    if (text === undefined) {
      problems.push({
        message: `cannot read ${current}: no such file`,
        source: from,
        hint: from
          ? 'fix the path in extends (relative to the file that names it)'
          : 'check the path of the nodeset file',
      })
      return new Map()
    }
    files.push(current)
    const raw = parseIni(text, current)
    problems.push(...raw.problems)
    const merged: Merged = new Map()
    const general = raw.sections.filter((s) => s.name === 'general')
    for (const entry of general.flatMap((s) => s.entries).filter((e) => e.key === 'extends')) {
      for (const base of splitWords(entry.value)) {
        const basePath = path.resolve(path.dirname(current), base)
        const at = {file: entry.file, line: entry.line}
        if (stack.includes(basePath) || basePath === current) {
          const chain = [...stack, current, basePath].slice(
            stack.indexOf(basePath) >= 0 ? stack.indexOf(basePath) : stack.length,
          )
          problems.push({
            message: `extends loop: ${chain.map((f) => path.basename(f)).join(' → ')}`,
            source: at,
            hint: 'a file cannot extend itself, directly or through another file; remove one of the extends',
          })
          continue
        }
        mergeInto(merged, load(basePath, [...stack, current], at))
      }
    }
    for (const section of raw.sections) {
      let target = merged.get(section.name)
      if (!target) {
        target = {name: section.name, source: {file: section.file, line: section.line}, values: new Map()}
        merged.set(section.name, target)
      }
      const seen = new Map<string, number>()
      for (const entry of section.entries) {
        if (entry.key === 'extends' && section.name === 'general') continue
        if (entry.op === '=' && seen.has(entry.key)) {
          problems.push({
            message: `${entry.key} is set twice in [${section.name}] (first at line ${seen.get(entry.key)})`,
            source: {file: entry.file, line: entry.line},
            hint: 'keep one of them; to add to a value, use "key += …"',
          })
        }
        if (entry.op === '=') seen.set(entry.key, entry.line)
        applyEntry(target, entry)
      }
    }
    return merged
  }
  const sections = load(path.resolve(file), [])
  return {sections, problems, files}
}
