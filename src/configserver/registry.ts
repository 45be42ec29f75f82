/**
 * The registered deployments in memory, as committed: set from what a commit that changes a
 * deployment's membership read back, and, when the store is shared with other replicas, re-read
 * from the store (`refresh`) when another replica changed it or a request needs it current.
 * Whoever keeps something per deployment (the token index, the long-poll waiters) listens for
 * replacements.
 */
import type {Analysis} from '../plan/check.js'
import {HttpError} from './errors.js'
import {type InstanceRecord, Registration} from './model.js'
import type {RegistrationRecord} from './records.js'
import type {StateStore} from './state.js'
import {StateError} from './store.js'

export interface RegistryListener {
  /** `name` now reads `after` (undefined: deleted) instead of `before` (undefined: new). */
  replaced(name: string, before: Registration | undefined, after: Registration | undefined): void
}

export class Registry {
  private readonly registrations = new Map<string, Registration>()
  private readonly listeners: RegistryListener[] = []
  /** Bumped by every write this process applies: a re-read that started before it is stale. */
  private readonly generations = new Map<string, number>()
  private readonly running = new Map<string, Promise<void>>()
  private readonly queued = new Map<string, Promise<void>>()

  constructor(private readonly store: StateStore) {}

  listen(listener: RegistryListener): void {
    this.listeners.push(listener)
  }

  /** Every deployment of the state, at start; a record that cannot be read stops the start, with the state named. */
  async loadAll(): Promise<void> {
    for (const name of await this.store.deploymentNames()) {
      try {
        this.set(name, await this.store.load(name))
      } catch (error) {
        throw new StateError(
          `${this.store.where}: deployment ${name} cannot be read (${(error as Error).message}); ` +
            'restore it from a backup, or delete the deployment and register it again',
        )
      }
    }
  }

  get(name: string): Registration | undefined {
    return this.registrations.get(name)
  }

  names(): string[] {
    return [...this.registrations.keys()]
  }

  /** The deployment, or a 404 that says to register it. */
  registration(name: string): Registration {
    const registration = this.registrations.get(name)
    if (!registration)
      throw new HttpError(404, `unknown deployment ${name}; register it first (PUT /v1/deployments/${name})`)
    return registration
  }

  /** The instance, or a 404 naming what is unknown. */
  instance(name: string, id: string): {registration: Registration; instance: InstanceRecord} {
    const registration = this.registration(name)
    const instance = registration.instance(id)
    if (!instance) throw new HttpError(404, `unknown instance ${id} in deployment ${name}`)
    return {registration, instance}
  }

  /** After a commit: the deployment as it read back (undefined: deleted). */
  set(name: string, record: RegistrationRecord | undefined, analysis?: Analysis): void {
    this.wrote(name)
    const before = this.registrations.get(name)
    const after = record ? new Registration(record, analysis) : undefined
    if (after) this.registrations.set(name, after)
    else this.registrations.delete(name)
    for (const listener of this.listeners) listener.replaced(name, before, after)
  }

  /** A write of this process changed the deployment in memory. */
  wrote(name: string): void {
    this.generations.set(name, (this.generations.get(name) ?? 0) + 1)
  }

  /**
   * Re-read the deployment from a shared store: what resolves has read everything committed before
   * the call. Calls that arrive while a read runs share the one read after it.
   */
  refresh(name: string): Promise<void> {
    if (!this.store.shared) return Promise.resolve()
    const queued = this.queued.get(name)
    if (queued) return queued
    const start = (): Promise<void> => {
      this.queued.delete(name)
      const read = this.reread(name).finally(() => {
        if (this.running.get(name) === read) this.running.delete(name)
      })
      this.running.set(name, read)
      return read
    }
    const running = this.running.get(name)
    if (!running) return start()
    const next = running.catch(() => {}).then(start)
    this.queued.set(name, next)
    return next
  }

  private async reread(name: string): Promise<void> {
    // A write of this process applied meanwhile may be newer than what was read: read again.
    for (let attempt = 0; attempt < 10; attempt++) {
      const generation = this.generations.get(name)
      const record = await this.store.load(name)
      if (this.generations.get(name) !== generation) continue
      if (record || this.registrations.has(name)) this.set(name, record)
      return
    }
  }

  get size(): number {
    return this.registrations.size
  }
}
