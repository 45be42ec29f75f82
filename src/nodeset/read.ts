/**
 * Reading a nodeset file: extends and `+=`/`-=` (merge.ts), `${…}` (interpolate.ts), then validation of
 * every section and key (general.ts, provider.ts, role.ts). All problems are gathered and reported at
 * once, each with the file:line that set the value and a hint.
 */
import fs from 'node:fs'
import path from 'node:path'
import {type Diagnostic, DiagnosticsError, didYouMean} from '../core/diagnostics.js'
import {type Catalog, loadCatalog} from '../services/catalog.js'
import {defaultIO, type ReaderIO} from './files.js'
import {readGeneral} from './general.js'
import {Interpolator} from './interpolate.js'
import {readMerged} from './merge.js'
import {readProvider} from './provider.js'
import {Reader} from './reader.js'
import {readRole} from './role.js'
import {isSiteSection, placeRoles, readSites} from './site.js'
import type {Nodeset, RoleSpec} from './types.js'

const KNOWN_SECTIONS = ['general', 'provider', 'site:NAME', 'appserver', 'balancer', 'service:NAME', 'role:NAME']

export {defaultIO} from './files.js'
export {MAX_NODES} from './role.js'
export {INPUT_MARKER, isInputMarker, isValidHostname, parseBool, parseDuration, parseSize} from './values.js'

/** The role a section describes, or undefined for an unknown section. */
export function roleOfSection(section: string): string | undefined {
  if (section === 'appserver' || section === 'balancer') return section
  if (/^service:[A-Za-z0-9_-]+$/.test(section)) return section
  const custom = /^role:([A-Za-z0-9_-]+)$/.exec(section)
  return custom ? custom[1] : undefined
}

export interface ReadResult {
  nodeset: Nodeset
  catalog: Catalog
}

/** Read and validate a nodeset file; throws DiagnosticsError with every problem found. */
export function readNodeset(file: string, io: ReaderIO = defaultIO()): ReadResult {
  const merged = readMerged(file, io)
  // A nodeset file that could not be read says only that: what follows from it being empty is noise.
  if (merged.files.length === 0) throw new DiagnosticsError(merged.problems)
  const interpolator = new Interpolator(merged.sections, io.env)
  const reader = new Reader(interpolator, io)
  const root = path.resolve(file)
  const general = readGeneral(reader, merged.sections.get('general'), root)
  const {catalog, problems: catalogProblems} = loadCatalog(
    general.servicesDirs.length ? general.servicesDirs : defaultServicesDirs(root),
  )
  const sites = readSites(reader, merged.sections, general)
  // With sites, each has its provider and [provider] (if any) only gives them defaults.
  const provider = sites.length ? sites[0].provider : readProvider(reader, merged.sections.get('provider'), root)
  const roles: RoleSpec[] = []
  for (const [name, section] of merged.sections) {
    reader.noteSecrets(section)
    if (name === 'general' || name === 'provider' || isSiteSection(name)) continue
    const role = roleOfSection(name)
    if (!role) {
      const guess = didYouMean(name, [
        'general',
        'provider',
        'appserver',
        'balancer',
        ...[...catalog.keys()].map((s) => `service:${s}`),
      ])
      reader.problem(
        `unknown section [${name}]`,
        section.source,
        guess ? `did you mean [${guess}]?` : `sections are: ${KNOWN_SECTIONS.join(', ')}`,
      )
      continue
    }
    roles.push(readRole(reader, section, role, catalog))
  }
  if (roles.length === 0)
    reader.problem(
      'the nodeset has no roles',
      {file: root, line: 1},
      'add [appserver], [service:NAME], [balancer] or [role:NAME] sections',
    )
  else placeRoles(reader, roles, sites)
  const problems = [...merged.problems, ...interpolator.problems, ...catalogProblems, ...reader.problems]
  if (problems.length > 0) throw new DiagnosticsError(dedupe(problems))
  const nodeset: Nodeset = {
    file: root,
    files: merged.files,
    general,
    provider,
    roles,
    ...(sites.length ? {sites} : {}),
    secrets: [...reader.secrets].filter((s) => s.length >= 3),
  }
  return {nodeset, catalog}
}

/** A `services/` folder beside the nodeset file is the user's services directory. */
function defaultServicesDirs(file: string): string[] {
  const dir = path.join(path.dirname(file), 'services')
  return fs.existsSync(dir) ? [dir] : []
}

function dedupe(problems: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>()
  return problems.filter((p) => {
    const key = `${p.source?.file}:${p.source?.line}:${p.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}
