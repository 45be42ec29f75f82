/**
 * A config server's federation (docs/federation.md): for each federated deployment it holds, it
 * publishes what its outbox queued (publisher confirms; a message leaves the outbox only once the
 * broker confirmed it, and everything unconfirmed is sent again after a reconnect), sends a heartbeat
 * with its high-water sequence, answers catch-up requests with snapshots, and asks for one itself on
 * a gap, at start and whenever a heartbeat shows it is behind (receive.ts applies what comes in).
 */
import {HttpError} from '../errors.js'
import type {RegistrationPlan} from '../register.js'
import type {Registry} from '../registry.js'
import type {FederationStatus} from '../protocol.js'
import {type Store, stmt} from '../store.js'
import type {Waiters} from '../waiters.js'
import {dropConfirmed, federationRow, idsOfSite, outboxAfter, readInstance, sealState} from './fedstore.js'
import {parseKeys, signBody} from './keys.js'
import {type BrokerOptions, BrokerLink} from './link.js'
import {type Message, routingKey} from './messages.js'
import {Outbox} from './outbox.js'
import {FederatedDeployment} from './peers.js'
import {Receiver} from './receive.js'

export interface FederationOptions {
  site: string
  broker: BrokerOptions
  /** How often heartbeats go out and catch-ups are asked again (default 1000 ms). */
  heartbeatMs?: number
}

export interface FederationParts {
  store: Store
  registry: Registry
  waiters: Waiters
  log(message: string, error?: unknown): void
}

export class Federation {
  readonly site: string
  readonly outbox: Outbox
  private readonly heartbeatMs: number
  private readonly deployments = new Map<string, FederatedDeployment>()
  private readonly link: BrokerLink
  private readonly receiver: Receiver
  private timer?: NodeJS.Timeout
  private closed = false

  constructor(
    options: FederationOptions,
    private readonly parts: FederationParts,
  ) {
    this.site = options.site
    this.heartbeatMs = options.heartbeatMs ?? 1000
    this.outbox = new Outbox((deployment) => this.pumpByName(deployment))
    this.receiver = new Receiver({...parts, snapshotWanted: (d) => this.wantSnapshot(d)})
    this.link = new BrokerLink(
      options.broker,
      {
        deliver: (deployment, message, ack) => {
          const d = this.deployments.get(deployment)
          if (!d) return ack()
          try {
            this.receiver.deliver(d, message, ack)
          } catch (error) {
            // Whatever a message holds, the server goes on: it is dropped, and a catch-up repairs.
            parts.log(`a message for ${deployment} could not be handled; dropped`, error)
            ack()
          }
        },
        up: () => this.linkUp(),
        down: (error) => parts.log('the broker connection was lost; reconnecting', error),
      },
      parts.log,
    )
  }

  /** Connect to the broker and follow every federated deployment of the state. */
  async start(): Promise<void> {
    const names = stmt(this.parts.store.db, 'SELECT deployment FROM federation ORDER BY deployment')
      .pluck()
      .all() as string[]
    for (const name of names) {
      const d = this.track(name)
      // Not connected yet: the link declares these when it connects.
      if (d) await this.link.ensure({deployment: name, site: this.site, peers: [...d.peers.keys()]})
    }
    await this.link.start()
    this.timer = setInterval(() => this.beat(), this.heartbeatMs)
    this.timer.unref()
  }

  /** A federated registration must be for this server's site (400 otherwise). */
  accepts(plan: RegistrationPlan): void {
    if (plan.federation && plan.federation.site !== this.site)
      throw new HttpError(
        400,
        `this registration is for site ${plan.federation.site}, but this config server serves site ${this.site}`,
        {hint: "send each site's registration to that site's config server"},
      )
  }

  /** After a registration's commit: follow the deployment (or stop, when it is no longer federated). */
  async registered(deployment: string): Promise<void> {
    const d = this.track(deployment)
    if (!d) return this.forget(deployment)
    for (const site of d.peers.keys()) d.behind(site, Date.now())
    try {
      await this.link.ensure({deployment, site: this.site, peers: [...d.peers.keys()]})
    } catch (error) {
      this.parts.log(`declaring the broker queue of ${deployment} failed; it is declared again on reconnect`, error)
    }
    this.askCatchups(d, true)
    this.pump(d)
  }

  /** The deployment was deleted here: stop consuming and delete this site's queue. */
  async forget(deployment: string): Promise<void> {
    if (!this.deployments.delete(deployment)) return
    await this.link
      .drop(deployment)
      .catch((error: unknown) => this.parts.log(`dropping ${deployment}'s queue failed`, error))
  }

  status(deployment: string): FederationStatus | undefined {
    return this.deployments.get(deployment)?.status(this.link.isUp, this.heartbeatMs, Date.now())
  }

  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    await this.link.close()
  }

  private track(deployment: string): FederatedDeployment | undefined {
    const row = federationRow(this.parts.store.db, deployment)
    if (!row) return undefined
    const keys = parseKeys(row)
    let d = this.deployments.get(deployment)
    if (d) d.setPeers(keys)
    else this.deployments.set(deployment, (d = new FederatedDeployment(deployment, keys)))
    return d
  }

  private linkUp(): void {
    for (const d of this.deployments.values()) {
      // Whatever was handed to the old connection and not confirmed goes again.
      d.published = 0
      this.askCatchups(d, true)
      this.pump(d)
    }
  }

  private beat(): void {
    if (!this.link.isUp || this.closed) return
    for (const d of this.deployments.values()) {
      this.pump(d)
      const row = federationRow(this.parts.store.db, d.name)
      if (!row) continue
      this.control(d, {...this.head(d, row.epoch), kind: 'heartbeat', seq: row.lastSeq, intervalMs: this.heartbeatMs})
      this.askCatchups(d, false)
    }
  }

  private head(d: FederatedDeployment, epoch: string) {
    return {v: 1 as const, deployment: d.name, origin: this.site, epoch, sentAt: Date.now()}
  }

  private askCatchups(d: FederatedDeployment, now: boolean): void {
    if (!this.link.isUp) return
    const row = federationRow(this.parts.store.db, d.name)
    if (!row) return
    const at = Date.now()
    for (const [site, peer] of d.peers) {
      if (!peer.needCatchup || (!now && at - peer.askedAt < this.heartbeatMs)) continue
      peer.askedAt = at
      const position = stmt(this.parts.store.db, 'SELECT seq FROM fed_applied WHERE deployment = ? AND origin = ?')
        .pluck()
        .get(d.name, site) as number | undefined
      this.control(d, {...this.head(d, row.epoch), kind: 'catchup', to: site, seq: position ?? 0})
    }
  }

  private wantSnapshot(d: FederatedDeployment): void {
    if (d.snapshotWanted) return
    d.snapshotWanted = true
    setImmediate(() => this.pump(d))
  }

  private pumpByName(deployment: string): void {
    const d = this.deployments.get(deployment)
    if (d) this.pump(d)
  }

  /** Hand every queued message to the broker, in order, then a snapshot when one was asked for. */
  private pump(d: FederatedDeployment): void {
    if (!this.link.isUp || this.closed) return
    const db = this.parts.store.db
    for (const row of outboxAfter(db, d.name, d.published)) {
      d.published = row.seq
      const kind = (JSON.parse(row.body.toString('utf8')) as {kind: Message['kind']}).kind
      this.link.publish(d.name, routingKey(this.site, kind), row.body, row.signature).then(
        () => this.confirmed(d, row.seq),
        () => this.unconfirmed(d),
      )
    }
    if (!d.snapshotWanted) return
    d.snapshotWanted = false
    const fed = federationRow(db, d.name)
    if (!fed) return
    const instances = idsOfSite(db, d.name, this.site).flatMap((id) => {
      const state = readInstance(db, d.name, id)
      return state ? [{instance: id, state: sealState(state, d.keys.seal, d.name, this.site, id)}] : []
    })
    this.control(d, {...this.head(d, fed.epoch), kind: 'snapshot', seq: fed.lastSeq, instances})
  }

  /** Messages without a sequence (heartbeats, catch-ups, snapshots): lost ones are sent again by the next beat. */
  private control(d: FederatedDeployment, message: Message): void {
    const body = Buffer.from(JSON.stringify(message))
    this.link.publish(d.name, routingKey(this.site, message.kind), body, signBody(body, d.keys.signing)).catch(() => {})
  }

  private confirmed(d: FederatedDeployment, seq: number): void {
    d.confirmed = Math.max(d.confirmed, seq)
    if (d.dropping) return
    d.dropping = true
    const drop = (upTo: number): void => {
      this.parts.store
        .write((db) => dropConfirmed(db, d.name, upTo))
        .then(
          () => {
            if (d.confirmed > upTo && !this.closed) return drop(d.confirmed)
            d.dropping = false
          },
          () => (d.dropping = false),
        )
    }
    drop(d.confirmed)
  }

  /** The broker refused or lost a message: start again from what is unconfirmed (receivers skip repeats). */
  private unconfirmed(d: FederatedDeployment): void {
    if (!this.link.isUp || this.closed) return
    d.published = Math.min(d.published, d.confirmed)
    setTimeout(() => this.pump(d), 200).unref()
  }
}
