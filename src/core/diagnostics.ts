import type {Source} from './source.js'
import {formatSource} from './source.js'

/** One problem found in the user's input, with where it is and what to do about it. */
export interface Diagnostic {
  message: string
  source?: Source
  hint?: string
  /** Extra lines shown under the message (a cycle's edges, for example). */
  details?: string[]
}

export function formatDiagnostic(d: Diagnostic): string {
  const head = d.source ? `${formatSource(d.source)}: ${d.message}` : d.message
  const lines = [head, ...(d.details ?? []).map((l) => `    ${l}`)]
  if (d.hint) lines.push(`  hint: ${d.hint}`)
  return lines.join('\n')
}

/** Every problem of an input at once; commands print them all and exit with code 2. */
export class DiagnosticsError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join('\n'))
  }
}

/** Closest candidate by edit distance, for "did you mean". */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      bestDistance = d
      best = candidate
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({length: b.length + 1}, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}
