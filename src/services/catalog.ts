/**
 * Services: a directory per service with `service.json` (metadata, readable without running
 * anything) and `setup.sh.hbs` (the handlebars script run as root on the node). nodeset's own live in
 * `templates/services/`; a nodeset file may add a directory of its own with `[general] services_dir`.
 */
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {createRequire} from 'node:module'
import type {Diagnostic} from '../core/diagnostics.js'

export const TEMPLATES_DIR = fileURLToPath(new URL('../../templates/', import.meta.url))
export const BUILTIN_SERVICES_DIR = path.join(TEMPLATES_DIR, 'services')

export interface ParamMeta {
  description: string
  default?: string
  required: boolean
  secret: boolean
  /** Given when the deployment is launched (`--set`, `--values`, or asked), unless the nodeset file sets it. */
  input: boolean
}

export interface ServiceMeta {
  description: string
  params: Record<string, ParamMeta>
  provides: string[]
  after: string[]
  /** Roles this service is meant for, as a hint in `nodeset services`. */
  roles: string[]
}

/** The schema of service.json, in zod: loaded (zod with it) only to say what is wrong with a file. */
export function serviceMetaSchema() {
  const {z} = createRequire(import.meta.url)('zod') as typeof import('zod')
  const paramMetaSchema = z
    .object({
      description: z.string().default(''),
      default: z.string().optional(),
      required: z.boolean().default(false),
      secret: z.boolean().default(false),
      input: z.boolean().default(false),
    })
    .strict()
  return z
    .object({
      description: z.string(),
      params: z.record(z.string(), paramMetaSchema).default({}),
      provides: z.array(z.string()).default([]),
      after: z.array(z.string()).default([]),
      roles: z.array(z.string()).default([]),
    })
    .strict()
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string')
const only = (v: Record<string, unknown>, keys: string[]) => Object.keys(v).every((k) => keys.includes(k))
const optional = (v: unknown, is: (v: unknown) => boolean) => v === undefined || is(v)
const isBoolean = (v: unknown) => typeof v === 'boolean'
const isString = (v: unknown) => typeof v === 'string'

/**
 * Parsed service.json (from JSON.parse) as the schema gives it, defaults and key order included, when
 * it is plainly well formed; undefined for anything else, which the schema then reads and explains.
 */
export function plainServiceMeta(json: unknown): ServiceMeta | undefined {
  if (!isObject(json) || !only(json, ['description', 'params', 'provides', 'after', 'roles'])) return undefined
  const {description, params = {}, provides = [], after = [], roles = []} = json
  if (!isString(description) || !isObject(params) || !isStrings(provides) || !isStrings(after) || !isStrings(roles))
    return undefined
  const out: Record<string, ParamMeta> = {}
  for (const [name, p] of Object.entries(params)) {
    if (name === '__proto__' || !isObject(p) || !only(p, ['description', 'default', 'required', 'secret', 'input']))
      return undefined
    if (!optional(p.description, isString) || !optional(p.default, isString)) return undefined
    if (!optional(p.required, isBoolean) || !optional(p.secret, isBoolean) || !optional(p.input, isBoolean))
      return undefined
    out[name] = {
      description: (p.description as string | undefined) ?? '',
      ...(p.default !== undefined ? {default: p.default as string} : {}),
      required: (p.required as boolean | undefined) ?? false,
      secret: (p.secret as boolean | undefined) ?? false,
      input: (p.input as boolean | undefined) ?? false,
    }
  }
  return {description, params: out, provides: [...provides], after: [...after], roles: [...roles]}
}

export interface ServiceDefinition extends ServiceMeta {
  name: string
  dir: string
  /** Path of the setup script template. */
  scriptPath: string
  script: string
  /** Other `*.hbs` files of the directory, usable in the script as `{{> NAME}}` (file name without .hbs). */
  partials: Record<string, string>
  /** The path of each partial, for messages that point into it. */
  partialPaths: Record<string, string>
  /** The line of service.json where each param is declared. */
  paramLines?: Record<string, number>
  builtin: boolean
}

export type Catalog = Map<string, ServiceDefinition>

const SECRET_NAME = /password|secret|token/i

export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name)
}

function loadDir(dir: string, builtin: boolean, catalog: Catalog, problems: Diagnostic[]): void {
  if (!fs.existsSync(dir)) return
  for (const name of fs.readdirSync(dir).sort()) {
    const serviceDir = path.join(dir, name)
    const metaPath = path.join(serviceDir, 'service.json')
    if (!fs.existsSync(metaPath)) continue
    const text = fs.readFileSync(metaPath, 'utf8')
    let meta: ServiceMeta
    try {
      const json: unknown = JSON.parse(text)
      meta = plainServiceMeta(json) ?? (serviceMetaSchema().parse(json) as ServiceMeta)
    } catch (error) {
      const issues = (error as {issues?: Array<{path: PropertyKey[]; message: string}>}).issues
      const detail = Array.isArray(issues)
        ? issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
        : (error as Error).message
      problems.push({
        message: `service ${name}: bad metadata: ${detail}`,
        source: {file: metaPath, line: 1},
        hint: 'see "Services" in the README for the fields of service.json',
      })
      continue
    }
    const scriptPath = path.join(serviceDir, 'setup.sh.hbs')
    const script = fs.existsSync(scriptPath) ? fs.readFileSync(scriptPath, 'utf8') : ''
    const partialPaths = Object.fromEntries(
      fs
        .readdirSync(serviceDir)
        .filter((f) => f.endsWith('.hbs') && f !== 'setup.sh.hbs')
        .map((f) => [f.slice(0, -'.hbs'.length), path.join(serviceDir, f)]),
    )
    const partials = Object.fromEntries(
      Object.entries(partialPaths).map(([partial, file]) => [partial, fs.readFileSync(file, 'utf8')]),
    )
    for (const [param, spec] of Object.entries(meta.params)) {
      if (isSecretName(param)) spec.secret = true
      if (spec.input && spec.default !== undefined)
        problems.push({
          message: `service ${name}: param ${param} is "input": true and has a default`,
          source: {file: metaPath, line: lineOf(text, JSON.stringify(param))},
          hint: 'an input is given at launch: drop its "default", or drop "input" to keep the default',
        })
    }
    const paramLines = Object.fromEntries(Object.keys(meta.params).map((p) => [p, lineOf(text, JSON.stringify(p))]))
    catalog.set(name, {...meta, name, dir: serviceDir, scriptPath, script, partials, partialPaths, paramLines, builtin})
  }
}

/** The 1-based line where `needle` first appears in `text` (1 when it does not). */
function lineOf(text: string, needle: string): number {
  const at = text.indexOf(needle)
  return at < 0 ? 1 : text.slice(0, at).split('\n').length
}

/** Where a service's param is declared, for messages about its default or its input. */
export function paramSource(meta: ServiceDefinition, param: string): {file: string; line: number} {
  return {file: path.join(meta.dir, 'service.json'), line: meta.paramLines?.[param] ?? 1}
}

/** nodeset's services, then the user's (which may replace one of ours by name). */
export function loadCatalog(userDirs: string[] = []): {catalog: Catalog; problems: Diagnostic[]} {
  const catalog: Catalog = new Map()
  const problems: Diagnostic[] = []
  loadDir(BUILTIN_SERVICES_DIR, true, catalog, problems)
  for (const dir of userDirs) loadDir(dir, false, catalog, problems)
  return {catalog, problems}
}
