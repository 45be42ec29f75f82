export const REDACTED = '********'

/** Replace every occurrence of a secret value by a fixed mask; longest first so overlapping secrets vanish whole. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text
  for (const secret of [...secrets].filter((s) => s.length >= 3).sort((a, b) => b.length - a.length)) {
    out = out.split(secret).join(REDACTED)
    const json = JSON.stringify(secret).slice(1, -1)
    if (json !== secret) out = out.split(json).join(REDACTED)
  }
  return out
}
