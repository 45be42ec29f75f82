/** What the routes share: ids from the path, validated bodies, services by name. */
import type {z} from 'zod'
import {ID_PATTERN, ID_RULE} from '../core/ids.js'
import {HttpError, zodIssues} from './errors.js'
import type {InstanceRecord} from './model.js'
import type {ServiceSpec} from './protocol.js'

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

export function findService(instance: InstanceRecord, name: string): ServiceSpec {
  const service = instance.services.find((s) => s.name === name)
  if (!service)
    throw new HttpError(
      404,
      `instance ${instance.id} runs no service ${name}; it runs: ${instance.services.map((s) => s.name).join(', ') || 'nothing'}`,
    )
  return service
}
