/**
 * What the config servers of one deployment say to one another over the broker. A message is a JSON
 * body signed by its origin site (the signature travels in a header); everything received is checked
 * against these schemas before anything else, since a broker user may send anything.
 *
 * - `instance`: the whole current state of one instance of the origin (facts, its address as the
 *   origin's server saw it, contact times, service runs with their outputs sealed), numbered `seq`;
 * - `removed`: the instance is gone (a tombstone), numbered `seq` too;
 * - `heartbeat`: the highest `seq` the origin has published, so a receiver sees that it is behind
 *   (and how often heartbeats come);
 * - `catchup`: a receiver asks `to` for a snapshot, being at `seq`;
 * - `snapshot`: every instance of the origin as of `seq` (the ones absent are removed).
 */
import {isIP} from 'node:net'
import {z} from 'zod'
import {idSchema, SITE_PATTERN} from '../protocol.js'

const siteSchema = z.string().regex(SITE_PATTERN)
const time = z.number().int().nonnegative()
const factValue = z.union([z.string().max(16384), z.array(z.string().max(16384)).max(64), z.number(), z.boolean()])

export const runStateSchema = z
  .object({
    state: z.enum(['running', 'succeeded', 'failed']).optional(),
    exitCode: z.number().int().optional(),
    message: z.string().max(16384).optional(),
    startedAt: time.optional(),
    endedAt: time.optional(),
    /** The outputs, JSON, sealed with the deployment's seal key (keys.ts `seal`). */
    sealed: z.string().max(4 * 1024 * 1024),
  })
  .strict()

export const instanceStateSchema = z
  .object({
    // It goes into every node's hosts block and role map: an IP literal, nothing else.
    address: z
      .string()
      .max(64)
      .refine((value) => isIP(value) !== 0, 'an IP address')
      .optional(),
    facts: z.record(z.string().max(128), factValue),
    firstContact: time.optional(),
    lastContact: time.optional(),
    runs: z.record(idSchema, runStateSchema),
  })
  .strict()
export type InstanceState = z.infer<typeof instanceStateSchema>

const head = {
  v: z.literal(1),
  deployment: idSchema,
  origin: siteSchema,
  epoch: z.string().min(1).max(64),
  sentAt: time,
}
const seq = z.number().int().positive()

export const messageSchema = z.discriminatedUnion('kind', [
  z.object({...head, kind: z.literal('instance'), seq, instance: idSchema, state: instanceStateSchema}).strict(),
  z.object({...head, kind: z.literal('removed'), seq, instance: idSchema}).strict(),
  z
    .object({
      ...head,
      kind: z.literal('heartbeat'),
      seq: z.number().int().nonnegative(),
      /** How often the origin sends them: three missed and its link counts as down. */
      intervalMs: z.number().int().positive().max(3_600_000).optional(),
    })
    .strict(),
  z.object({...head, kind: z.literal('catchup'), to: siteSchema, seq: z.number().int().nonnegative()}).strict(),
  z
    .object({
      ...head,
      kind: z.literal('snapshot'),
      seq: z.number().int().nonnegative(),
      instances: z.array(z.object({instance: idSchema, state: instanceStateSchema}).strict()).max(100_000),
    })
    .strict(),
])
export type Message = z.infer<typeof messageSchema>
export type SequencedMessage = Extract<Message, {kind: 'instance' | 'removed'}>

/** The header that carries the origin's Ed25519 signature of the body (base64). */
export const SIGNATURE_HEADER = 'x-nodeset-signature'

/** The deployment's topic exchange, on every site's broker. */
export const exchangeName = (deployment: string): string => `nodeset.${deployment}`
/** A site's durable queue of what the other sites publish. */
export const queueName = (deployment: string, site: string): string => `nodeset.${deployment}.${site}`
/** `<origin>.<kind>`: a site's queue is bound with `<origin>.#` for every other origin. */
export const routingKey = (origin: string, kind: Message['kind']): string => `${origin}.${kind}`

/** What a sealed output set is bound to: another deployment's, instance's or service's ciphertext will not open. */
export const sealContext = (deployment: string, origin: string, instance: string, service: string): string =>
  `nodeset outputs\0${deployment}\0${origin}\0${instance}\0${service}`
