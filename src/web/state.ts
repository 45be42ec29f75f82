/**
 * Reading the deployment's live state for the status page, from another process's config server:
 * - embedded: straight from the SQLite file in the workspace, which `up` or `setup-node` in another
 *   terminal writes. A read-only connection sees every commit of the writer (WAL); `PRAGMA data_version`
 *   says cheaply whether anything was committed since the last reading, so polling costs nothing while
 *   nothing happens. Nothing is created: no file, no workspace.
 * - standalone (`config_server = URL`): its status route, with the admin token.
 */
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import type {ConfigServerClient} from '../configserver/client.js'
import {loadRegistration} from '../configserver/load.js'
import {Registration} from '../configserver/model.js'
import type {DeploymentStatus} from '../configserver/protocol.js'
import type {FactValue, RegistrationRecord} from '../configserver/records.js'
import {statusOf} from '../configserver/status.js'
import {isSecretName} from '../services/catalog.js'

export interface Reading {
  /** Undefined: the deployment is not registered (yet, or any more). */
  status?: DeploymentStatus
  facts(node: string): Record<string, FactValue> | undefined
  /** Secret values the state holds (secret outputs, inputs, secret constants): masked wherever shown. */
  secrets: string[]
}

export interface StateSource {
  /** Where the state is read from, for the page. */
  readonly where: string
  read(now: number): Promise<Reading>
  close(): Promise<void>
}

const NOT_REGISTERED: Reading = {facts: () => undefined, secrets: []}

export class SqliteStateSource implements StateSource {
  readonly where: string
  private db?: Database.Database
  private version?: number
  private registration?: Registration
  private record?: RegistrationRecord
  private secrets: string[] = []

  constructor(
    stateDir: string,
    private readonly deployment: string,
  ) {
    this.where = path.join(stateDir, 'configserver.sqlite')
  }

  async read(now: number): Promise<Reading> {
    const db = this.open()
    if (!db) return NOT_REGISTERED
    const version = db.pragma('data_version', {simple: true}) as number
    if (version !== this.version) {
      this.version = version
      this.load(db)
    }
    const {registration, record} = this
    if (!registration || !record) return NOT_REGISTERED
    const facts = new Map(record.instances.map((i) => [i.id, i.facts]))
    return {status: statusOf(registration, now), facts: (node) => facts.get(node), secrets: this.secrets}
  }

  private open(): Database.Database | undefined {
    if (this.db) return this.db
    if (!fs.existsSync(this.where)) return undefined
    try {
      this.db = new Database(this.where, {readonly: true, fileMustExist: true})
    } catch {
      // Being created by the other process right now: the next reading tries again.
      return undefined
    }
    return this.db
  }

  private load(db: Database.Database): void {
    try {
      this.record = loadRegistration(db, this.deployment)
    } catch (error) {
      // The schema is being written by the process that created the file: not registered yet.
      if (/no such table/.test((error as Error).message)) this.record = undefined
      else throw error
    }
    this.registration = this.record ? new Registration(this.record) : undefined
    this.secrets = this.record ? secretsOf(this.record) : []
  }

  async close(): Promise<void> {
    this.db?.close()
    this.db = undefined
  }
}

export class RemoteStateSource implements StateSource {
  private facts = new Map<string, Record<string, FactValue>>()
  private factsRead = 0

  constructor(
    readonly where: string,
    private readonly client: Pick<ConfigServerClient, 'status' | 'state'>,
    private readonly closeClient: () => Promise<void>,
  ) {}

  async read(now: number): Promise<Reading> {
    let status: DeploymentStatus
    try {
      status = await this.client.status()
    } catch (error) {
      if ((error as {status?: number}).status === 404) return NOT_REGISTERED
      throw error
    }
    // Facts change rarely (a phone-home): read them every few seconds, never their outputs' values.
    if (now - this.factsRead > 5000) {
      const state = await this.client.state()
      this.facts = new Map(state.instances.map((i) => [i.id, i.facts as Record<string, FactValue>]))
      this.factsRead = now
    }
    return {status, facts: (node) => this.facts.get(node), secrets: []}
  }

  async close(): Promise<void> {
    await this.closeClient()
  }
}

/** Values of secret outputs and params, and every input (which may be a secret given at launch). */
function secretsOf(record: RegistrationRecord): string[] {
  const out = new Set<string>()
  for (const instance of record.instances) {
    for (const run of Object.values(instance.runs))
      for (const [key, value] of Object.entries(run.outputs)) if (isSecretName(key)) out.add(value)
    for (const service of instance.services)
      for (const spec of Object.values(service.params)) if ('value' in spec && spec.secret) out.add(spec.value)
  }
  for (const byService of Object.values(record.inputs))
    for (const params of Object.values(byService)) for (const value of Object.values(params)) out.add(value)
  return [...out]
}
