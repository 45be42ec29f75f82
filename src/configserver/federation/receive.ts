/**
 * Receiving: a delivery from this site's queue is verified (the origin's Ed25519 signature, the
 * schema, the origin owning every instance it names, sealed outputs opening with the deployment's
 * key) before anything is written; what fails is refused and counted. What passes is decided and
 * applied inside one transaction with the position it moves (apply.ts), in delivery order, and only
 * then acknowledged to the broker. Nothing received is ever published again.
 */
import type {ConsumeMessage} from 'amqplib'
import {loadRegistration} from '../load.js'
import type {Registry} from '../registry.js'
import type {Store} from '../store.js'
import type {Waiters} from '../waiters.js'
import {behind, ownership, sequenceVerdict, snapshotApplies} from './apply.js'
import {
  idsOfSite,
  openState,
  positionOf,
  type RemoteInstance,
  removeRemote,
  setPosition,
  writeRemote,
} from './fedstore.js'
import {verifyBody} from './keys.js'
import {type Message, messageSchema, SIGNATURE_HEADER} from './messages.js'
import type {FederatedDeployment} from './peers.js'

export interface ReceiverParts {
  store: Store
  registry: Registry
  waiters: Waiters
  /** A peer asked this site for a snapshot of the deployment. */
  snapshotWanted(deployment: FederatedDeployment): void
  log(message: string, error?: unknown): void
}

type Refusal = 'badSignature' | 'notOwner'

export class Receiver {
  constructor(private readonly parts: ReceiverParts) {}

  /** Deal with one delivery; `ack` is called once it is applied, skipped or refused. */
  deliver(d: FederatedDeployment, delivery: ConsumeMessage, ack: () => void): void {
    const checked = this.check(d, delivery)
    if ('refused' in checked) {
      d.refused[checked.refused]++
      return ack()
    }
    const {message} = checked
    if (message.origin === d.keys.site) return ack()
    this.handle(d, message)
      .catch((error: unknown) => {
        // The state could not take it: a catch-up brings it again later.
        this.parts.log(`applying a message from site ${message.origin} to ${d.name} failed`, error)
        d.behind(message.origin, Date.now())
      })
      .finally(ack)
  }

  private check(d: FederatedDeployment, delivery: ConsumeMessage): {message: Message} | {refused: Refusal} {
    const origin = delivery.fields.routingKey.split('.')[0]
    const key = d.keys.peers.get(origin)
    const signature = delivery.properties.headers?.[SIGNATURE_HEADER]
    if (!key || typeof signature !== 'string') return {refused: 'badSignature'}
    if (!verifyBody(delivery.content, Buffer.from(signature, 'base64'), key)) return {refused: 'badSignature'}
    let parsed: unknown
    try {
      parsed = JSON.parse(delivery.content.toString('utf8'))
    } catch {
      return {refused: 'badSignature'}
    }
    const result = messageSchema.safeParse(parsed)
    if (!result.success || result.data.origin !== origin || result.data.deployment !== d.name)
      return {refused: 'badSignature'}
    const message = result.data
    const ids =
      message.kind === 'instance' || message.kind === 'removed'
        ? [message.instance]
        : message.kind === 'snapshot'
          ? message.instances.map((entry) => entry.instance)
          : []
    const registration = this.parts.registry.get(d.name)
    const owner = (id: string) => {
      const instance = registration?.instance(id)
      return instance ? (instance.site ?? null) : undefined
    }
    if (ownership(origin, ids, owner) === 'notOwner') return {refused: 'notOwner'}
    return {message}
  }

  private opened(d: FederatedDeployment, message: Message & {kind: 'instance'}): RemoteInstance | undefined {
    return openState(message.state, d.keys.seal, d.name, message.origin, message.instance)
  }

  private async handle(d: FederatedDeployment, message: Message): Promise<void> {
    const {store} = this.parts
    const now = Date.now()
    switch (message.kind) {
      case 'heartbeat': {
        d.heard(message.origin, message.sentAt, now, message)
        const position = await store.write((db) => positionOf(db, d.name, message.origin))
        if (behind(position, message.epoch, message.seq)) d.behind(message.origin, now)
        else d.caughtUp(message.origin)
        return
      }
      case 'catchup':
        if (message.to === d.keys.site) this.parts.snapshotWanted(d)
        return
      case 'instance':
      case 'removed':
        return this.applySequenced(d, message, now)
      case 'snapshot':
        return this.applySnapshot(d, message)
    }
  }

  private async applySequenced(
    d: FederatedDeployment,
    message: Extract<Message, {kind: 'instance' | 'removed'}>,
    now: number,
  ): Promise<void> {
    const {store, registry, waiters} = this.parts
    const state = message.kind === 'instance' ? this.opened(d, message) : undefined
    if (message.kind === 'instance' && !state) {
      d.refused.badSignature++
      return
    }
    const {origin, epoch, seq, instance: id} = message
    await store.write(
      (db) => {
        const verdict = sequenceVerdict(positionOf(db, d.name, origin), epoch, seq)
        if (verdict !== 'apply') return {verdict}
        const changed = state
          ? writeRemote(db, d.name, origin, id, state, message.sentAt)
          : removeRemote(db, d.name, origin, id)
        setPosition(db, d.name, origin, {epoch, seq})
        return {verdict, changed, record: !state && changed > 0 ? loadRegistration(db, d.name) : undefined}
      },
      ({verdict, changed, record}) => {
        if (verdict === 'replayed') d.refused.replayed++
        if (verdict === 'gap') d.behind(origin, now)
        if (verdict !== 'apply') return
        const peer = d.peers.get(origin)
        if (peer) peer.applied++
        d.heard(origin, message.sentAt, Date.now())
        if (!changed) return
        if (record) return registry.set(d.name, record)
        registry.wrote(d.name)
        const registration = registry.get(d.name)
        if (registration && state) waiters.wakeSoon(d.name, registration.replaceRemote(id, state, message.sentAt))
      },
      true,
    )
  }

  private async applySnapshot(d: FederatedDeployment, message: Extract<Message, {kind: 'snapshot'}>) {
    const states: Array<{id: string; state: RemoteInstance}> = []
    for (const entry of message.instances) {
      const state = openState(entry.state, d.keys.seal, d.name, message.origin, entry.instance)
      if (!state) {
        d.refused.badSignature++
        return
      }
      states.push({id: entry.instance, state})
    }
    const {origin, epoch, seq} = message
    await this.parts.store.write(
      (db) => {
        if (!snapshotApplies(positionOf(db, d.name, origin), epoch, seq)) return undefined
        const present = new Set(states.map((entry) => entry.id))
        for (const {id, state} of states) writeRemote(db, d.name, origin, id, state, message.sentAt)
        // An instance the origin no longer has was removed while a tombstone could not reach here.
        for (const id of idsOfSite(db, d.name, origin)) if (!present.has(id)) removeRemote(db, d.name, origin, id)
        setPosition(db, d.name, origin, {epoch, seq})
        return loadRegistration(db, d.name)
      },
      (record) => {
        if (!record) return
        d.caughtUp(origin)
        d.heard(origin, message.sentAt, Date.now())
        const peer = d.peers.get(origin)
        if (peer) peer.applied++
        this.parts.registry.set(d.name, record)
      },
      true,
    )
  }
}
