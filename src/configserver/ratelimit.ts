/**
 * Counts authentication failures per key; past the limit within the window, the key waits out the
 * window. What a key is (an address with the credential it presented, an address with the instance
 * it aimed at) is the caller's choice: see auth.ts. Pure: the clock is passed in.
 */
export class AuthFailureLimiter {
  private readonly entries = new Map<string, {failures: number; since: number; blockedUntil: number}>()

  constructor(
    readonly limit = 20,
    readonly windowMs = 60_000,
    /** Keys kept at most; past it, expired ones are dropped, then the oldest. */
    readonly maxKeys = 100_000,
  ) {}

  /** Seconds the key must still wait, or 0. */
  retryAfter(key: string, now: number): number {
    const entry = this.entries.get(key)
    if (!entry || entry.blockedUntil <= now) return 0
    return Math.ceil((entry.blockedUntil - now) / 1000)
  }

  /** Count one failure; returns the seconds the key must now wait (0 while under the limit). */
  fail(key: string, now: number): number {
    let entry = this.entries.get(key)
    if (!entry || (now - entry.since > this.windowMs && entry.blockedUntil <= now)) {
      if (this.entries.size >= this.maxKeys) this.prune(now)
      entry = {failures: 0, since: now, blockedUntil: 0}
      this.entries.delete(key)
      this.entries.set(key, entry)
    }
    entry.failures++
    if (entry.failures >= this.limit && entry.blockedUntil <= now) entry.blockedUntil = now + this.windowMs
    return this.retryAfter(key, now)
  }

  get size(): number {
    return this.entries.size
  }

  private prune(now: number): void {
    for (const [key, entry] of this.entries)
      if (now - entry.since > this.windowMs && entry.blockedUntil <= now) this.entries.delete(key)
    // Still full: drop the oldest (Map keeps insertion order), so memory stays bounded under a flood.
    for (const key of this.entries.keys()) {
      if (this.entries.size < this.maxKeys) break
      this.entries.delete(key)
    }
  }
}
