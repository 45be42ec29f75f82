/**
 * The SQLite store (store.ts) as a `StateStore`: one process owns the file, so nothing is shared. A
 * federated server gives it an outbox: each write that changes an instance of this site queues its
 * message in the same transaction.
 */
import type {OutboxHooks} from './federation/outbox.js'
import {loadRegistration} from './load.js'
import {writeRegistration} from './register.js'
import type {PhoneHome, StateStore} from './state.js'
import {Store, type StoreOptions} from './store.js'
import {writes} from './writes.js'

export class SqliteStore implements StateStore {
  readonly shared = false
  readonly where: string
  readonly store: Store
  private outbox?: OutboxHooks

  constructor(stateDir: string, options: StoreOptions = {}) {
    this.store = new Store(stateDir, options)
    this.where = this.store.file
  }

  /** From now on, every write tells `outbox` what it changed, inside its transaction. */
  federate(outbox: OutboxHooks): void {
    this.outbox = outbox
    // The outbox publishes what it reads back after a commit: each commit must be on disk when it returns.
    this.store.syncEachCommit()
  }

  async deploymentNames(): Promise<string[]> {
    return this.store.deploymentNames()
  }

  async load(name: string) {
    return loadRegistration(this.store.db, name)
  }

  async register(...[plan, now, apply]: Parameters<StateStore['register']>) {
    const {tokens} = await this.store.write(
      (db) => {
        const removed: Array<{id: string; site?: string}> = []
        const tokens = writeRegistration(db, plan, now, removed)
        this.outbox?.registered(db, plan, removed)
        return {tokens, record: loadRegistration(db, plan.deployment)}
      },
      ({record}) => apply(record),
      true,
    )
    return tokens
  }

  phoneHome(...[deployment, id, write, apply]: Parameters<StateStore['phoneHome']>): Promise<PhoneHome> {
    return this.store.write(
      (db): PhoneHome => {
        const result = writes.phoneHome(db, deployment, id, write)
        if (result.changed > 0) this.outbox?.changed(db, deployment, [id])
        return result
      },
      apply,
      // Alone, the phone-home checks everything before its one write; the outbox writes after it.
      this.outbox !== undefined,
    )
  }

  nodeTokenUsed(...[deployment, id, hash, now, apply]: Parameters<StateStore['nodeTokenUsed']>) {
    return this.store.write((db) => writes.nodeTokenUsed(db, deployment, id, hash, now), apply)
  }

  report(...[deployment, id, service, report, now, apply]: Parameters<StateStore['report']>) {
    return this.store.write(
      (db) => {
        const changed = writes.run(db, deployment, id, service, report, now)
        if (changed > 0) this.outbox?.changed(db, deployment, [id])
        return changed
      },
      apply,
      this.outbox !== undefined,
    )
  }

  deleteDeployment(...[deployment, apply]: Parameters<StateStore['deleteDeployment']>) {
    return this.store.write((db) => writes.deleteDeployment(db, deployment), apply)
  }

  async deleteInstance(...[deployment, id, apply]: Parameters<StateStore['deleteInstance']>) {
    const {n} = await this.store.write(
      (db) => {
        this.outbox?.removing(db, deployment, id)
        const removed = writes.deleteInstance(db, deployment, id)
        return {n: removed, record: removed > 0 ? loadRegistration(db, deployment) : undefined}
      },
      ({n, record}) => apply(n, record),
      true,
    )
    return n
  }

  async close(): Promise<void> {
    this.store.close()
  }
}
