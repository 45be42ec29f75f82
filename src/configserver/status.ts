/**
 * Status and state of a registration: per service waiting (on what), ready, running, succeeded,
 * failed (as reported, or because a template cannot be rendered) or timed out; per deployment
 * pending, settled or failed. Pure: the clock is passed in.
 */
import type {Registration} from './model.js'
import type {InstanceRecord} from './records.js'
import type {
  DeploymentPhase,
  DeploymentState,
  DeploymentStatus,
  ServiceSpec,
  ServiceStatus,
  Waiting,
} from './protocol.js'

type ServiceEntry = DeploymentStatus['instances'][number]['services'][number]

export function statusOf(registration: Registration, now: number): DeploymentStatus {
  const deadline = registration.deadline
  const overdue = deadline !== undefined && now > deadline
  const failed: string[] = []
  const timedOut: string[] = []
  let total = 0
  let succeeded = 0
  const instances: DeploymentStatus['instances'] = []
  for (const instance of registration.allInstances()) {
    const services: ServiceEntry[] = []
    for (const service of instance.services) {
      const entry = serviceStatus(registration, instance, service, overdue ? deadline : undefined)
      services.push(entry)
      total++
      if (entry.status === 'succeeded') succeeded++
      if (entry.status === 'failed')
        failed.push(
          `${instance.id}/${service.name}${entry.exitCode === undefined ? '' : ` (exit code ${entry.exitCode})`}`,
        )
      if (entry.status === 'timed out') timedOut.push(`${instance.id}/${service.name}`)
    }
    const remote = registration.remote(instance)
    instances.push({
      id: instance.id,
      role: instance.role,
      ...(instance.site === undefined ? {} : {site: instance.site}),
      ...(instance.address === undefined ? {} : {address: instance.address}),
      ...(instance.firstContact === undefined ? {} : {firstContact: iso(instance.firstContact)}),
      ...(instance.lastContact === undefined ? {} : {lastContact: iso(instance.lastContact)}),
      ...(remote && instance.fedAt !== undefined ? {factsAgeMs: Math.max(0, now - instance.fedAt)} : {}),
      services,
    })
  }
  let state: DeploymentPhase = 'pending'
  let reason: string | undefined
  if (failed.length > 0) {
    state = 'failed'
    reason = `${failed.length} service${failed.length === 1 ? '' : 's'} failed: ${listSome(failed)}`
  } else if (timedOut.length > 0) {
    state = 'failed'
    reason = `the startup deadline ${iso(deadline!)} passed with ${timedOut.length} service${timedOut.length === 1 ? '' : 's'} not started: ${listSome(timedOut)}`
  } else if (succeeded === total) {
    state = 'settled'
  }
  return {
    deployment: registration.name,
    state,
    ...(reason ? {reason} : {}),
    registeredAt: iso(registration.registeredAt),
    ...(deadline === undefined ? {} : {deadline: iso(deadline)}),
    instances,
  }
}

function serviceStatus(
  registration: Registration,
  instance: InstanceRecord,
  service: ServiceSpec,
  passedDeadline: number | undefined,
): ServiceEntry {
  const run = instance.runs[service.name]
  if (run?.state) {
    return {
      name: service.name,
      status: run.state,
      ...(run.exitCode === undefined ? {} : {exitCode: run.exitCode}),
      ...(run.message === undefined ? {} : {message: run.message}),
    }
  }
  if (registration.remote(instance) && passedDeadline === undefined)
    // Its own site resolves and starts it; here it waits for that site's report.
    return {name: service.name, status: 'waiting', waitingFor: [`site ${instance.site} to report it`]}
  const resolved = registration.resolveService(instance, service)
  if (resolved.failed.length > 0) {
    const what = resolved.failed.map((f) => `param ${f.param} cannot be rendered: ${f.message}`)
    return {name: service.name, status: 'failed', message: `${listSome(what, 3)}; fix the template and register again`}
  }
  const waitingFor = [
    ...resolved.waiting.map(describeWaiting),
    ...service.after
      .filter((before) => instance.runs[before]?.state !== 'succeeded')
      .map((before) => `${instance.id}/${before} to succeed`),
  ]
  if (passedDeadline !== undefined) {
    const still =
      waitingFor.length > 0 ? `; it was waiting for ${listSome(waitingFor)}` : '; it was ready but never reported'
    return {
      name: service.name,
      status: 'timed out',
      message: `not started by the startup deadline ${iso(passedDeadline)}${still}`,
    }
  }
  const status: ServiceStatus = waitingFor.length > 0 ? 'waiting' : 'ready'
  return {name: service.name, status, ...(waitingFor.length > 0 ? {waitingFor} : {})}
}

export function stateOf(registration: Registration): DeploymentState {
  return {
    deployment: registration.name,
    instances: [...registration.allInstances()].map((instance) => {
      const node = registration.worldNode(instance)
      const services: DeploymentState['instances'][number]['services'] = {}
      for (const service of instance.services) {
        const run = instance.runs[service.name]
        let status: ServiceStatus | undefined = run?.state
        if (!status) {
          const resolved = registration.resolveService(instance, service)
          status = resolved.failed.length > 0 ? 'failed' : resolved.complete ? 'ready' : 'waiting'
        }
        services[service.name] = run?.exitCode === undefined ? {status} : {status, exitCode: run.exitCode}
      }
      return {
        id: instance.id,
        role: instance.role,
        index: instance.index,
        facts: node.facts,
        outputs: node.outputs,
        services,
      }
    }),
  }
}

export function describeWaiting(w: Waiting): string {
  if (w.kind === 'input') return `input ${w.key}`
  if (w.kind === 'fact') return `fact ${w.key} of ${w.instance}`
  return `output ${w.key} of ${w.instance}${w.outputService ? `/${w.outputService}` : ''}`
}

export function listSome(items: string[], limit = 10): string {
  return items.length <= limit
    ? items.join(', ')
    : `${items.slice(0, limit).join(', ')} and ${items.length - limit} more`
}

export const iso = (ms: number): string => new Date(ms).toISOString()
