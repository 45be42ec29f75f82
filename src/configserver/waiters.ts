/**
 * Long-polls waiting for a configuration: who waits for which instance (and service), woken after
 * the commits that may complete them. A wake-up runs outside any request, so whatever it throws is
 * caught here, logged, and turned into an answer (the waiter is released and its route answers).
 */
import type {ServerResponse} from 'node:http'

/** Waiters checked (and answered) in one turn of the event loop. */
const WAKE_BATCH = 256

export type WaitOutcome = 'complete' | 'gone' | 'timeout' | 'shutdown' | 'closed' | 'error'

/** Where a waiter's configuration stands: settled (complete, or failed for good), gone, or still waiting. */
export type WaitCheck = (deployment: string, id: string, service: string | undefined) => 'settled' | 'gone' | 'pending'

interface Waiter {
  service?: string
  done(outcome: WaitOutcome): void
}

export class Waiters {
  private readonly waiting = new Map<string, Map<string, Set<Waiter>>>()
  private closing = false
  private count = 0
  /** What `wakeSoon` was given since its last turn: deployment → ids. */
  private soon = new Map<string, Set<string>>()
  private soonScheduled = false

  constructor(
    private readonly check: WaitCheck,
    private readonly logError: (error: unknown, message: string) => void,
  ) {}

  /** Wait until the instance's config (or one service's) is settled, or `seconds` pass, or the client goes. */
  wait(deployment: string, id: string, service: string | undefined, seconds: number, response: ServerResponse) {
    if (this.closing) return Promise.resolve<WaitOutcome>('shutdown')
    return new Promise<WaitOutcome>((resolve) => {
      const forDeployment = this.waiting.get(deployment) ?? new Map<string, Set<Waiter>>()
      this.waiting.set(deployment, forDeployment)
      const forInstance = forDeployment.get(id) ?? new Set<Waiter>()
      forDeployment.set(id, forInstance)
      const onClose = () => waiter.done('closed')
      const waiter: Waiter = {
        ...(service === undefined ? {} : {service}),
        done: (outcome) => {
          if (!forInstance.delete(waiter)) return
          this.count--
          clearTimeout(timer)
          response.off('close', onClose)
          if (forInstance.size === 0 && forDeployment.get(id) === forInstance) forDeployment.delete(id)
          if (forDeployment.size === 0 && this.waiting.get(deployment) === forDeployment)
            this.waiting.delete(deployment)
          resolve(outcome)
        },
      }
      const timer = setTimeout(() => waiter.done('timeout'), seconds * 1000)
      response.on('close', onClose)
      forInstance.add(waiter)
      this.count++
    })
  }

  /**
   * After a commit: answer the waiters of `ids` whose configuration is now settled (or gone). A few
   * hundred at a time, each batch's answers written before the next is checked: the first answers
   * go out at once instead of after every waiter was checked, and the clients read them meanwhile.
   */
  wake(deployment: string, ids: Iterable<string>): void {
    const forDeployment = this.waiting.get(deployment)
    if (!forDeployment) return
    const woken: Array<[string, Waiter]> = []
    for (const id of ids) for (const waiter of forDeployment.get(id) ?? []) woken.push([id, waiter])
    this.wakeFrom(deployment, woken, 0)
  }

  private wakeFrom(deployment: string, woken: Array<[string, Waiter]>, start: number): void {
    const end = Math.min(woken.length, start + WAKE_BATCH)
    for (let i = start; i < end; i++) {
      const [id, waiter] = woken[i]
      try {
        const where = this.check(deployment, id, waiter.service)
        if (where === 'settled') waiter.done('complete')
        else if (where === 'gone') waiter.done('gone')
      } catch (error) {
        this.logError(error, `waking a long-poll of ${deployment}/${id} failed; it is answered as it stands`)
        waiter.done('error')
      }
    }
    // A waiter answered meanwhile (timed out, gone, shut down) is left alone: `done` acts once.
    if (end < woken.length) setImmediate(() => this.wakeFrom(deployment, woken, end))
  }

  /** Every waiter of the deployment (its membership changed). */
  wakeAll(deployment: string): void {
    this.wake(deployment, [...(this.waiting.get(deployment)?.keys() ?? [])])
  }

  /**
   * Wake after the writer's own answer has gone out: a phone-home is not held up by the configs it
   * completes. The ids of every write until then are woken together (a commit applies many).
   */
  wakeSoon(deployment: string, ids: string[]): void {
    // No one waits: a waiter that comes later checks the state this write left (see the route).
    if (this.count === 0 || ids.length === 0) return
    let pending = this.soon.get(deployment)
    if (!pending) this.soon.set(deployment, (pending = new Set()))
    for (const id of ids) pending.add(id)
    if (!this.soonScheduled) {
      this.soonScheduled = true
      setImmediate(() => this.wakePending())
    }
  }

  private wakePending(): void {
    const soon = this.soon
    this.soon = new Map()
    this.soonScheduled = false
    for (const [deployment, ids] of soon) {
      try {
        this.wake(deployment, ids)
      } catch (error) {
        this.logError(error, `waking the long-polls of ${deployment} failed`)
      }
    }
  }

  /** Answer every waiter now (202): the server is closing. */
  shutdown(): void {
    this.closing = true
    for (const forDeployment of [...this.waiting.values()])
      for (const waiting of [...forDeployment.values()]) for (const waiter of [...waiting]) waiter.done('shutdown')
  }

  get size(): number {
    return this.count
  }
}
