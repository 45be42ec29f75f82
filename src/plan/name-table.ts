/**
 * Names numbered in the order they are added (their entries), in one open-addressed hash table over
 * typed arrays sized once for the names it will hold; what a name stands for is kept by the caller,
 * by entry. A name can be looked up as a run of characters inside another text (a quoted argument of
 * a param) without making that run a string: the check of 100,000 references slices, hashes and
 * drops no string for the names they give.
 */
export class NameTable {
  private readonly names: string[] = []
  /**
   * Two numbers a slot: the entry + 1 (0: empty) and its name's hash, side by side so that a probe
   * reads one place in memory; the slots a power of two, at most half full.
   */
  private readonly slots: Int32Array
  private readonly mask: number
  private readonly capacity: number

  constructor(capacity: number) {
    let size = 16
    while (size < capacity * 2) size *= 2
    this.slots = new Int32Array(2 * size)
    this.mask = size - 1
    this.capacity = size / 2
  }

  get size(): number {
    return this.names.length
  }

  /** The entry of `name`, or -1. */
  find(name: string): number {
    return this.findRun(name, 0, name.length)
  }

  /** The entry of the name written at `text[start, end)`, or -1. */
  findRun(text: string, start: number, end: number): number {
    const hash = hashOf(text, start, end)
    const length = end - start
    for (let slot = hash & this.mask; ; slot = (slot + 1) & this.mask) {
      const e = this.slots[2 * slot] - 1
      if (e < 0) return -1
      if (this.slots[2 * slot + 1] === hash && this.names[e].length === length && sameChars(this.names[e], text, start))
        return e
    }
  }

  /** The entry of `name`, added when it is not in the table (then the last entry). */
  findOrAdd(name: string): number {
    const hash = hashOf(name, 0, name.length)
    let slot = hash & this.mask
    for (; this.slots[2 * slot] !== 0; slot = (slot + 1) & this.mask) {
      const e = this.slots[2 * slot] - 1
      if (this.slots[2 * slot + 1] === hash && this.names[e] === name) return e
    }
    const e = this.names.length
    if (e >= this.capacity) throw new Error('internal: name table sized too small')
    this.names.push(name)
    this.slots[2 * slot] = e + 1
    this.slots[2 * slot + 1] = hash
    return e
  }
}

/** FNV-1a over the UTF-16 code units of `text[start, end)`, in 30 bits (a small integer to V8: never boxed). */
function hashOf(text: string, start: number, end: number): number {
  let hash = 0x811c9dc5 | 0
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  return (hash ^ (hash >>> 30)) & 0x3fffffff
}

/** Whether `text` has the characters of `name` from `start` on (a loop: shorter than a call of startsWith for short names). */
export function sameChars(name: string, text: string, start: number): boolean {
  for (let k = 0; k < name.length; k++) if (text.charCodeAt(start + k) !== name.charCodeAt(k)) return false
  return true
}
