/** What the routes share: ids from the path, validated bodies, services by name. */
import type {z} from 'zod'
import {ID_PATTERN, ID_RULE} from '../core/ids.js'
import {HttpError, zodIssues} from './errors.js'
import type {InstanceRecord, Registration} from './model.js'
import {type FactsRequest, factsRequestSchema, type ServiceSpec} from './protocol.js'

export type {ServerContext} from './context.js'

type Params = Record<string, string>

/** The named ids of the path, each checked against the id pattern (400 otherwise). */
export function ids(params: unknown, ...names: Array<'dep' | 'id' | 'svc'>): Params {
  const out: Params = {}
  const what = {dep: 'deployment', id: 'instance', svc: 'service'}
  for (const name of names) {
    const value = (params as Params)[name]
    if (typeof value !== 'string' || !ID_PATTERN.test(value))
      throw new HttpError(400, `the ${what[name]} id in the path is invalid: it ${ID_RULE}`)
    out[name] = value
  }
  return out
}

/** A body (or query) as the schema reads it; 400 with the issues otherwise. */
export function body<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value)
  if (!parsed.success) throw new HttpError(400, `invalid ${what}`, {issues: zodIssues(parsed.error)})
  return parsed.data
}

const FACT_KEY = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/
const FACT_CHARS = 16384

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype

function isFactValue(value: unknown): boolean {
  if (typeof value === 'string') return value.length <= FACT_CHARS
  if (typeof value === 'number') return Number.isFinite(value)
  if (typeof value === 'boolean') return true
  return (
    Array.isArray(value) && value.length <= 64 && value.every((v) => typeof v === 'string' && v.length <= FACT_CHARS)
  )
}

/**
 * Whether a phone-home body is one `factsRequestSchema` takes as it is: the common case, checked in a
 * fraction of zod's time. False says only "not sure": zod then decides, and words the 400.
 */
export function factsAsSent(value: unknown): value is FactsRequest {
  if (!isPlainObject(value)) return false
  const keys = Object.keys(value)
  if (keys.length !== 1 || keys[0] !== 'facts' || !isPlainObject(value.facts)) return false
  const facts = value.facts
  for (const key of Object.keys(facts))
    if (key === '__proto__' || !FACT_KEY.test(key) || !isFactValue(facts[key])) return false
  return true
}

/** A phone-home body, as `factsRequestSchema` reads it; 400 with the issues otherwise. */
export function factsBody(value: unknown): FactsRequest {
  return factsAsSent(value) ? value : body(factsRequestSchema, value, 'facts')
}

export function findService(instance: InstanceRecord, name: string): ServiceSpec {
  const service = instance.services.find((s) => s.name === name)
  if (!service)
    throw new HttpError(
      404,
      `instance ${instance.id} runs no service ${name}; it runs: ${instance.services.map((s) => s.name).join(', ') || 'nothing'}`,
    )
  return service
}

/** One writer per instance: another site's instance reports to its own site's server, never here. */
export function ownInstance({
  registration,
  instance,
}: {
  registration: Registration
  instance: InstanceRecord
}): InstanceRecord {
  if (registration.remote(instance))
    throw new HttpError(
      409,
      `instance ${instance.id} belongs to site ${instance.site}; it reports to that site's config server, and its state comes from there`,
    )
  return instance
}
