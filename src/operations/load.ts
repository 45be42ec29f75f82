import fs from 'node:fs'
import {createRequire} from 'node:module'
import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import {readNodeset} from '../nodeset/read.js'
import type {Nodeset} from '../nodeset/types.js'
import {planNodeset, type PlanResult} from '../plan/plan.js'
import {rememberParsed} from '../plan/template.js'
import {checkProviderSettings, providerWarnings} from '../providers/settings.js'
import type {Catalog} from '../services/catalog.js'

export interface Loaded {
  nodeset: Nodeset
  catalog: Catalog
  result: PlanResult
  /** What will not work as the file stands, though nothing is refused (print them; they change no exit code). */
  warnings: Diagnostic[]
}

/**
 * Read and plan a nodeset file, and check its [provider] settings offline (no provider is built, no
 * cloud is called). Reading problems throw DiagnosticsError; naming problems throw it with the provider's
 * problems added; graph and provider problems are in result.analysis.problems, so that `plan` and every
 * command that opens the deployment refuse the same file the same way.
 */
export function loadPlan(file: string): Loaded {
  rememberBuiltTemplates()
  const {nodeset, catalog} = readNodeset(file)
  let result: PlanResult
  try {
    result = planNodeset(nodeset, catalog)
  } catch (error) {
    if (error instanceof DiagnosticsError)
      throw new DiagnosticsError([...checkProviderSettings(nodeset), ...error.diagnostics])
    throw error
  }
  result.analysis.problems.unshift(...checkProviderSettings(nodeset, result.plan))
  return {nodeset, catalog, result, warnings: providerWarnings(nodeset)}
}

/** What the build wrote (scripts/manifest.mjs): each of nodeset's own templates with its handlebars AST. */
interface ParsedTemplates {
  handlebars: string
  templates: Array<[string, unknown]>
}

let remembered = false

/**
 * Checking a plan parses the services' scripts; nodeset's own were parsed when it was built, so
 * handlebars' parser is not loaded for them. Only those very texts, by the handlebars that parsed them:
 * an edited template, or another handlebars, is parsed again. Without the file (a run from the
 * sources) everything is parsed.
 */
function rememberBuiltTemplates(): void {
  if (remembered) return
  remembered = true
  let parsed: ParsedTemplates
  try {
    parsed = JSON.parse(fs.readFileSync(new URL('../template-asts.json', import.meta.url), 'utf8')) as ParsedTemplates
  } catch {
    return
  }
  const {version} = createRequire(import.meta.url)('handlebars/package.json') as {version: string}
  if (parsed.handlebars === version) rememberParsed(parsed.templates)
}
