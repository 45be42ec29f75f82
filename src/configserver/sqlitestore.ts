/** The SQLite store (store.ts) as a `StateStore`: one process owns the file, so nothing is shared. */
import {loadRegistration} from './load.js'
import {writeRegistration} from './register.js'
import type {PhoneHome, StateStore} from './state.js'
import {Store, type StoreOptions} from './store.js'
import {writes} from './writes.js'

export class SqliteStore implements StateStore {
  readonly shared = false
  readonly where: string
  readonly store: Store

  constructor(stateDir: string, options: StoreOptions = {}) {
    this.store = new Store(stateDir, options)
    this.where = this.store.file
  }

  async deploymentNames(): Promise<string[]> {
    return this.store.deploymentNames()
  }

  async load(name: string) {
    return loadRegistration(this.store.db, name)
  }

  async register(...[plan, now, apply]: Parameters<StateStore['register']>) {
    const {tokens} = await this.store.write(
      (db) => ({tokens: writeRegistration(db, plan, now), record: loadRegistration(db, plan.deployment)}),
      ({record}) => apply(record),
      true,
    )
    return tokens
  }

  phoneHome(...[deployment, id, write, apply]: Parameters<StateStore['phoneHome']>): Promise<PhoneHome> {
    const {exchange} = write
    return this.store.write(
      (db): PhoneHome => {
        const exchanged = exchange && writes.exchange(db, deployment, id, exchange.hash, write.now, exchange.graceMs)
        const changed = writes.facts(db, deployment, id, write.facts, write.address, write.now)
        return {changed, ...(exchanged ? {exchanged} : {})}
      },
      apply,
      exchange !== undefined,
    )
  }

  nodeTokenUsed(...[deployment, id, hash, now, apply]: Parameters<StateStore['nodeTokenUsed']>) {
    return this.store.write((db) => writes.nodeTokenUsed(db, deployment, id, hash, now), apply)
  }

  report(...[deployment, id, service, report, now, apply]: Parameters<StateStore['report']>) {
    return this.store.write((db) => writes.run(db, deployment, id, service, report, now), apply)
  }

  deleteDeployment(...[deployment, apply]: Parameters<StateStore['deleteDeployment']>) {
    return this.store.write((db) => writes.deleteDeployment(db, deployment), apply)
  }

  async deleteInstance(...[deployment, id, apply]: Parameters<StateStore['deleteInstance']>) {
    const {n} = await this.store.write(
      (db) => {
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
