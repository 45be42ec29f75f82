/** A role section (`[appserver]`, `[service:NAME]`, `[balancer]`, `[role:NAME]`): nodes, names, size, services and their params. */
import {didYouMean} from '../core/diagnostics.js'
import type {SizeSpec} from '../core/source.js'
import {type Catalog, isSecretName} from '../services/catalog.js'
import type {MergedSection, MergedValue} from './merge.js'
import type {Reader} from './reader.js'
import type {Location, RoleSpec, Value} from './types.js'
import {boolProblem, isInputMarker, isValidHostname, misusesInput, parseBool, parseSize, sizeProblem} from './values.js'

export const MAX_NODES = 1000

const ROLE_KEYS = ['nodes', 'node_name', 'size', 'services', 'site']
const APPSERVER_KEYS = [...ROLE_KEYS, 'locations', 'load_balancer']
const BALANCER_KEYS = [...ROLE_KEYS, 'hostnames']

export function readRole(r: Reader, section: MergedSection, role: string, catalog: Catalog): RoleSpec {
  const get = (key: string) => section.values.get(key)
  const isBalancer = role === 'balancer'
  const known = role === 'appserver' ? APPSERVER_KEYS : isBalancer ? BALANCER_KEYS : ROLE_KEYS
  const services = roleServices(r, section, role, catalog)
  const params: RoleSpec['params'] = {}
  const isParam = (key: string): boolean => {
    const dot = key.indexOf('.')
    if (dot <= 0) return false
    const [service, param] = [key.slice(0, dot), key.slice(dot + 1)]
    const v = get(key)!
    if (!services.value.includes(service)) {
      r.problem(
        `"${key}" sets a param of service ${service}, which [${section.name}] does not run`,
        v.source,
        `its services are: ${services.value.join(', ') || 'none'}; add ${service} to "services" or fix the name`,
      )
      return true
    }
    const meta = catalog.get(service)
    if (meta && !(param in meta.params)) {
      const guess = didYouMean(param, Object.keys(meta.params))
      r.problem(
        `service ${service} has no param "${param}"`,
        v.source,
        guess
          ? `did you mean "${service}.${guess}"?`
          : `its params: ${Object.keys(meta.params).join(', ') || 'none'} (see nodeset services)`,
      )
      return true
    }
    const text = r.text(v)
    if (misusesInput(text)) {
      r.problem(
        `"${key}": {{input}} must be the whole value, not part of "${text}"`,
        v,
        `write "${key} = {{input}}" to give the whole param when launching (--set ${section.name}.${key}=VALUE); a param cannot combine an input with other text`,
      )
      return true
    }
    ;(params[service] ??= {})[param] = {value: text, source: v.source}
    if (!isInputMarker(text) && (meta?.params[param]?.secret || isSecretName(param))) r.secrets.add(text)
    return true
  }
  r.unknownKeys(section, known, isParam)

  let nodes: Value<number> = {value: 1, source: section.source}
  if (get('nodes')) {
    const text = r.text(get('nodes')!)
    const n = /^\d+$/.test(text) ? Number(text) : NaN
    const max = isBalancer ? 1 : MAX_NODES
    if (!Number.isInteger(n) || n < 1 || n > max) {
      r.problem(
        `nodes must be a whole number from 1 to ${max}, not "${text}"`,
        get('nodes')!,
        isBalancer ? 'one balancer node is supported' : undefined,
      )
    } else nodes = {value: n, source: get('nodes')!.source}
  }
  let size: Value<SizeSpec> | undefined
  if (get('size')) {
    const spec = parseSize(r.text(get('size')!))
    if (!spec) {
      const p = sizeProblem(r.text(get('size')!))
      r.problem(p.message, get('size')!, p.hint)
    } else size = {value: spec, source: get('size')!.source}
  }
  const nodeName = get('node_name') ? r.value(get('node_name')!) : undefined
  const locations = get('locations') ? roleLocations(r, get('locations')!) : []
  let loadBalancer: Value<boolean> | undefined
  if (get('load_balancer')) {
    const b = parseBool(r.text(get('load_balancer')!))
    if (b === undefined) {
      const p = boolProblem('load_balancer', r.text(get('load_balancer')!))
      r.problem(p.message, get('load_balancer')!, p.hint)
    } else loadBalancer = {value: b, source: get('load_balancer')!.source}
  }
  const hostnames = get('hostnames') ? r.text(get('hostnames')!).split(/\s+/).filter(Boolean) : []
  for (const h of hostnames)
    if (!isValidHostname(h))
      r.problem(
        `hostname "${h}" is not a valid host name`,
        get('hostnames')!,
        'use labels of letters, digits and "-", separated by dots',
      )
  return {
    role,
    section: section.name,
    source: section.source,
    nodes,
    nodeName,
    size,
    services,
    params,
    locations,
    loadBalancer,
    hostnames,
    ...(get('site') ? {site: r.value(get('site')!)} : {}),
  }
}

function roleServices(r: Reader, section: MergedSection, role: string, catalog: Catalog): Value<string[]> {
  const v = section.values.get('services')
  const defaults =
    role === 'appserver'
      ? ['appserver']
      : role === 'balancer'
        ? ['balancer']
        : role.startsWith('service:')
          ? [role.slice('service:'.length)]
          : []
  if (!v) {
    for (const name of defaults) {
      if (!catalog.has(name)) {
        const guess = didYouMean(name, catalog.keys())
        r.problem(
          `[${section.name}]: there is no service "${name}"`,
          section.source,
          guess
            ? `did you mean [service:${guess}]?`
            : `available services: ${[...catalog.keys()].join(', ')} (nodeset services)`,
        )
      }
    }
    return {value: defaults.filter((n) => catalog.has(n)), source: section.source}
  }
  const names = r
    .text(v)
    .split(/[\s,]+/)
    .filter(Boolean)
  for (const name of names) {
    if (!catalog.has(name)) {
      const guess = didYouMean(name, catalog.keys())
      r.problem(
        `unknown service "${name}"`,
        v,
        guess ? `did you mean "${guess}"?` : `available: ${[...catalog.keys()].join(', ')} (nodeset services)`,
      )
    }
  }
  return {value: names.filter((n) => catalog.has(n)), source: v.source}
}

function roleLocations(r: Reader, v: MergedValue): Location[] {
  const result: Location[] = []
  r.text(v)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .forEach((line) => {
      const [url, app, ...rest] = line.split(/\s+/)
      if (!app || rest.length > 0 || !/^https?:\/\/[^\s/]+/.test(url)) {
        r.problem(`location "${line}" is not "URL APP_NAME"`, v, 'one per line, e.g. http://foobar.com/ blog')
        return
      }
      result.push({url, app, source: v.source})
    })
  return result
}
