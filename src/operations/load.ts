import {readNodeset} from '../nodeset/read.js'
import type {Nodeset} from '../nodeset/types.js'
import {planNodeset, type PlanResult} from '../plan/plan.js'
import type {Catalog} from '../services/catalog.js'

export interface Loaded {
  nodeset: Nodeset
  catalog: Catalog
  result: PlanResult
}

/** Read and plan a nodeset file. Reading problems throw DiagnosticsError; graph problems are in result.analysis. */
export function loadPlan(file: string): Loaded {
  const {nodeset, catalog} = readNodeset(file)
  return {nodeset, catalog, result: planNodeset(nodeset, catalog)}
}
