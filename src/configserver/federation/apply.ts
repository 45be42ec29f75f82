/**
 * What a receiving server does with a verified message, decided without I/O: a message about an
 * instance its origin does not own is refused; a numbered one is applied when it is the next of its
 * origin, skipped when already applied (a replay or a resend), and held back when one is missing (a
 * gap: the receiver asks for a snapshot instead). Apply is idempotent on (origin, epoch, sequence).
 */

/** How far a receiver has applied an origin's messages: every sequence up to `seq` of `epoch`. */
export interface Position {
  epoch: string
  seq: number
}

export type SequenceVerdict = 'apply' | 'replayed' | 'gap'

/** The receiver at `position` (undefined: nothing applied yet) gets message `seq` of `epoch`. */
export function sequenceVerdict(position: Position | undefined, epoch: string, seq: number): SequenceVerdict {
  // Another epoch: the origin's state started over, so its numbers start over too.
  const highWater = position && position.epoch === epoch ? position.seq : 0
  if (seq <= highWater) return 'replayed'
  return seq === highWater + 1 ? 'apply' : 'gap'
}

/** A snapshot as of `seq` replaces what the receiver holds unless the receiver is already past it. */
export function snapshotApplies(position: Position | undefined, epoch: string, seq: number): boolean {
  return !position || position.epoch !== epoch || seq >= position.seq
}

/** Behind: the origin says it published up to `published`, and the receiver has applied less. */
export function behind(position: Position | undefined, epoch: string, published: number): boolean {
  const highWater = position && position.epoch === epoch ? position.seq : 0
  return published > highWater
}

/**
 * Whether `origin` may speak for the instances a message names: `owner(id)` is the owning site as this
 * server's registration says, undefined when the instance is unknown here (the message is then applied
 * as a no-op, so the sequence moves on).
 */
export function ownership(
  origin: string,
  ids: string[],
  owner: (id: string) => string | undefined | null,
): 'owned' | 'notOwner' {
  for (const id of ids) {
    const site = owner(id)
    if (site !== undefined && site !== origin) return 'notOwner'
  }
  return 'owned'
}
