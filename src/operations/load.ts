import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import {readNodeset} from '../nodeset/read.js'
import type {Nodeset} from '../nodeset/types.js'
import {planNodeset, type PlanResult} from '../plan/plan.js'
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
