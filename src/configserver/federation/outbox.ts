/**
 * The outbox side of the store: called by the SQLite store inside the transaction of every local write
 * (a phone-home, a service report, a registration, a removal), it numbers, signs and queues a message
 * for each change to an instance this site owns. Messages applied from other sites never come here, so
 * nothing received is published again. Secret outputs are sealed before they are queued.
 */
import type {RegistrationPlan} from '../register.js'
import {type Db, stmt} from '../store.js'
import {enqueue, federationRow, readInstance, saveFederation, sealState} from './fedstore.js'
import {parseKeys, type SiteKeys} from './keys.js'
import type {Message} from './messages.js'

/** What the store calls inside its transactions. */
export interface OutboxHooks {
  /** The instances' state changed here (facts, a service report). */
  changed(db: Db, deployment: string, ids: string[]): void
  /** A registration was written; `removed` are the instances it dropped. */
  registered(db: Db, plan: RegistrationPlan, removed: Array<{id: string; site?: string}>): void
  /** The instance is about to be deleted. */
  removing(db: Db, deployment: string, id: string): void
}

export class Outbox implements OutboxHooks {
  private readonly keys = new Map<string, {pem: string; seal: string; keys: SiteKeys}>()
  private readonly scheduled = new Set<string>()

  /** `queued`: told (after the commit) that a deployment has messages to publish. */
  constructor(private readonly queued: (deployment: string) => void) {}

  /** The deployment's site and keys, when it is federated; keys are parsed once per registration. */
  private federated(db: Db, deployment: string): {site: string; keys: SiteKeys} | undefined {
    const row = federationRow(db, deployment)
    if (!row) return undefined
    let cached = this.keys.get(deployment)
    if (!cached || cached.pem !== row.signingKey || cached.seal !== row.sealKey) {
      cached = {pem: row.signingKey, seal: row.sealKey, keys: parseKeys(row)}
      this.keys.set(deployment, cached)
    }
    return {site: row.site, keys: cached.keys}
  }

  private queue(db: Db, deployment: string, keys: SiteKeys, make: (seq: number, head: Head) => Message): void {
    enqueue(db, deployment, keys, (seq, epoch) =>
      make(seq, {v: 1, deployment, origin: keys.site, epoch, sentAt: Date.now()}),
    )
    // Runs after the transaction commits (the flush is synchronous); a rolled back one left nothing to publish.
    if (this.scheduled.has(deployment)) return
    this.scheduled.add(deployment)
    setImmediate(() => {
      this.scheduled.delete(deployment)
      this.queued(deployment)
    })
  }

  changed(db: Db, deployment: string, ids: string[]): void {
    const federated = this.federated(db, deployment)
    if (!federated) return
    for (const id of ids) {
      if (siteOf(db, deployment, id) !== federated.site) continue
      const state = readInstance(db, deployment, id)
      if (!state) continue
      const sealed = sealState(state, federated.keys.seal, deployment, federated.site, id)
      this.queue(db, deployment, federated.keys, (seq, head) => ({
        ...head,
        kind: 'instance',
        seq,
        instance: id,
        state: sealed,
      }))
    }
  }

  registered(db: Db, plan: RegistrationPlan, removed: Array<{id: string; site?: string}>): void {
    saveFederation(db, plan.deployment, plan.federation)
    this.keys.delete(plan.deployment)
    const federated = this.federated(db, plan.deployment)
    if (!federated) return
    for (const gone of removed)
      if (gone.site === federated.site)
        this.queue(db, plan.deployment, federated.keys, (seq, head) => ({
          ...head,
          kind: 'removed',
          seq,
          instance: gone.id,
        }))
  }

  removing(db: Db, deployment: string, id: string): void {
    const federated = this.federated(db, deployment)
    if (!federated || siteOf(db, deployment, id) !== federated.site) return
    this.queue(db, deployment, federated.keys, (seq, head) => ({...head, kind: 'removed', seq, instance: id}))
  }
}

type Head = {v: 1; deployment: string; origin: string; epoch: string; sentAt: number}

function siteOf(db: Db, deployment: string, id: string): string | undefined {
  return (
    (stmt(db, 'SELECT site FROM instances WHERE deployment = ? AND id = ?').pluck().get(deployment, id) as
      string | null | undefined) ?? undefined
  )
}
