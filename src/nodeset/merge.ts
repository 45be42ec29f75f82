/**
 * `extends = base.conf other.conf` (paths relative to the including file, nested, later wins) and
 * buildout's `key +=` / `key -=`. Reading goes through a small I/O interface so this stays testable
 * with in-memory files.
 */
import path from 'node:path'
import type {Diagnostic} from '../core/diagnostics.js'
import {formatSource, type Source} from '../core/source.js'
import {outcome, type ReaderIO} from './files.js'
import {type Operator, parseIni, type RawEntry} from './ini.js'

export type {ReaderIO} from './files.js'

export interface MergedValue {
  value: string
  source: Source
  /** For `key +=` / `key -=`: the operator, and where the value it changed was set. */
  op?: Operator
  inherited?: Source
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

function applyEntry(target: MergedSection, entry: RawEntry, problems: Diagnostic[]): void {
  const source = {file: entry.file, line: entry.line}
  const previous = target.values.get(entry.key)
  if (entry.op === '-=' && !previous) {
    problems.push({
      message: `${entry.key} -= removes from a value that is not set`,
      source,
      hint: `[${target.name}] has no ${entry.key} before this line (in this file or a file it extends); remove the line or fix the key`,
    })
    return
  }
  if (entry.op === '=' || !previous) {
    target.values.set(entry.key, {value: entry.value, source})
    return
  }
  const lines = previous.value.split('\n').filter((l) => l.trim() !== '')
  const inherited = {op: entry.op, inherited: previous.source}
  if (entry.op === '+=') {
    const added = entry.value.split('\n').filter((l) => l.trim() !== '')
    target.values.set(entry.key, {value: [...lines, ...added].join('\n'), source, ...inherited})
    return
  }
  const words = (l: string) => l.trim().split(/\s+/)
  const removed = entry.value
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
  // A line is removed whole; on a one-line value of several words (`hostnames = a b`), a word.
  const oneLine = lines.length === 1 && removed.every((r) => !r.includes(' ') && words(lines[0]).includes(r))
  const have = oneLine ? words(lines[0]) : lines.map((l) => l.trim())
  for (const r of removed.filter((r) => !have.includes(r))) {
    problems.push({
      message: `${entry.key} -= ${r}: the value set at ${formatSource(previous.source)} has no such line`,
      source,
      hint: `it has: ${have.join(', ') || 'nothing'}`,
      details: [`${entry.key} set at ${formatSource(previous.source)}`],
    })
  }
  const kept = have.filter((l) => !removed.includes(l))
  target.values.set(entry.key, {value: kept.join(oneLine ? ' ' : '\n'), source, ...inherited})
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
    const {text, problem} = outcome(io.readFile(current))
    if (text === undefined) {
      if (problem) problems.push({message: `${current} ${problem}`, source: from})
      else
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
        applyEntry(target, entry, problems)
      }
    }
    return merged
  }
  const sections = load(path.resolve(file), [])
  return {sections, problems, files}
}
