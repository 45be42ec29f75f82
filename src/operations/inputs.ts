/**
 * Params given at launch: the ones the nodeset file leaves to launch time (`SERVICE.PARAM = {{input}}`,
 * or `"input": true` in service.json), gathered from `--set ROLE.SERVICE.PARAM=VALUE`, a values file
 * (`--values FILE`) and, for what is still missing, a question on the terminal (hidden for a secret).
 * Without a terminal every missing one is listed and nothing goes on. The values go to the config
 * server as its registration's inputs, one per node of the role; secret ones join the secrets never
 * printed.
 *
 * A values file is INI like the nodeset file, each role's section with its `SERVICE.PARAM = value`
 * lines; a value is kept as written (from after `=` to the end of the line, blanks around it
 * trimmed, indented lines continuing it), since a password may hold ` #`: only whole lines are comments.
 */
import {type Diagnostic, DiagnosticsError, didYouMean} from '../core/diagnostics.js'
import {UserError} from '../core/errors.js'
import {formatSource, type Source} from '../core/source.js'
import {outcome, readTextFile} from '../nodeset/files.js'
import {parseIni} from '../nodeset/ini.js'
import {INPUT_MARKER, roleOfSection} from '../nodeset/read.js'
import type {PlanResult} from '../plan/plan.js'
import type {Inputs, PlanInput} from '../plan/types.js'
import type {OperationUi} from './ui.js'

/** One value given for a launch-time param. */
export interface GivenValue {
  /** The role as written: its section (`service:mysql`, `role:worker`, `appserver`) or its name (`worker`). */
  target: string
  service: string
  param: string
  value: string
  /** How messages name where it was given: `--set KEY` or `FILE:LINE`. */
  from: string
  source?: Source
}

const SET_HINT =
  'write --set ROLE.SERVICE.PARAM=VALUE, ROLE as the section of the nodeset file: service:mysql, appserver…'

/** `--set ROLE.SERVICE.PARAM=VALUE`, each; throws DiagnosticsError naming every malformed one. */
export function parseSets(values: readonly string[]): GivenValue[] {
  const problems: Diagnostic[] = []
  const given: GivenValue[] = []
  for (const text of values) {
    const eq = text.indexOf('=')
    const key = (eq < 0 ? text : text.slice(0, eq)).trim()
    const parts = splitKey(key)
    if (eq < 0 || !parts) {
      problems.push({
        message: `--set ${eq < 0 ? text : key}: ${eq < 0 ? 'no "=VALUE"' : 'not ROLE.SERVICE.PARAM'}`,
        hint: SET_HINT,
      })
      continue
    }
    given.push({...parts, value: text.slice(eq + 1), from: `--set ${key}`})
  }
  if (problems.length > 0) throw new DiagnosticsError(problems)
  return given
}

function splitKey(key: string): {target: string; service: string; param: string} | undefined {
  const first = key.indexOf('.')
  const second = key.indexOf('.', first + 1)
  if (first <= 0 || second <= first + 1 || second === key.length - 1) return undefined
  return {target: key.slice(0, first), service: key.slice(first + 1, second), param: key.slice(second + 1)}
}

/** A values file: `[ROLE]` sections of `SERVICE.PARAM = value` lines. Throws DiagnosticsError with file:line. */
export function readValuesFile(file: string): GivenValue[] {
  const read = outcome(readTextFile(file))
  if (read.text === undefined)
    throw new DiagnosticsError([
      {
        message: `values file ${file} ${read.problem ?? 'does not exist'}`,
        hint: 'name a text file of [ROLE] sections with SERVICE.PARAM = value lines',
      },
    ])
  const raw = parseIni(read.text, file, {verbatim: true})
  const problems = [...raw.problems]
  const given: GivenValue[] = []
  for (const section of raw.sections) {
    if (roleOfSection(section.name) === undefined) {
      problems.push({
        message: `[${section.name}] is not a role section`,
        source: {file, line: section.line},
        hint: 'a values file has the role sections of the nodeset file: [appserver], [service:NAME], [balancer], [role:NAME]',
      })
      continue
    }
    const seen = new Map<string, number>()
    for (const entry of section.entries) {
      const source = {file, line: entry.line}
      const dot = entry.key.indexOf('.')
      if (entry.op !== '=')
        problems.push({
          message: `"${entry.key} ${entry.op}": a values file only sets values`,
          source,
          hint: `write "${entry.key} = VALUE"`,
        })
      else if (dot <= 0 || dot === entry.key.length - 1)
        problems.push({
          message: `"${entry.key}" is not SERVICE.PARAM`,
          source,
          hint: `write the param as in the nodeset file, e.g. "mysql.admin_password = …" under [service:mysql]`,
        })
      else if (seen.has(entry.key))
        problems.push({
          message: `${entry.key} is set twice in [${section.name}] (first at line ${seen.get(entry.key)})`,
          source,
          hint: 'give each value once',
        })
      else {
        seen.set(entry.key, entry.line)
        given.push({
          target: section.name,
          service: entry.key.slice(0, dot),
          param: entry.key.slice(dot + 1),
          value: entry.value,
          from: formatSource(source),
          source,
        })
      }
    }
  }
  if (problems.length > 0) throw new DiagnosticsError(problems)
  return given
}

/** What collecting needs of the opened deployment. */
export interface InputsDeployment {
  file: string
  result: Pick<PlanResult, 'inputs' | 'plan'>
  /** Values never to print: the secret inputs are added. */
  secrets: string[]
}

/** What create-node, setup-node and up are given: the flags, or inputs already collected (up collects once for both). */
export interface InputOptions {
  /** The `--set` flags, as given. */
  sets?: readonly string[]
  /** The `--values` file. */
  valuesFile?: string
  /** Collected already: nothing is read or asked again. */
  inputs?: Inputs
}

export interface CollectOptions extends Pick<InputOptions, 'sets' | 'valuesFile'> {
  /** The terminal's question (OperationUi.ask); absent or answering undefined: nobody can answer. */
  ask?: OperationUi['ask']
}

/**
 * The inputs for the config server's registration (registrationFor(plan, {inputs})): every awaited
 * param from `--set`, else the values file, else asked. A value for something not awaited, or any
 * param left without one, is a DiagnosticsError or UserError (exit 2) listing them all.
 */
export async function collectInputs(dep: InputsDeployment, opts: CollectOptions = {}): Promise<Inputs> {
  const awaited = dep.result.inputs
  // Parse both before asking anything: a typo in either is reported before any question.
  const fromFile = opts.valuesFile ? readValuesFile(opts.valuesFile) : []
  const fromSets = parseSets(opts.sets ?? [])
  const values = new Map<PlanInput, string>()
  const problems: Diagnostic[] = []
  for (const given of [...fromFile, ...fromSets]) {
    const input = awaited.find((i) => matches(i, given))
    if (input) values.set(input, given.value)
    else problems.push(notAwaited(dep, given))
  }
  if (problems.length > 0) throw new DiagnosticsError(problems)

  const missing: PlanInput[] = []
  for (const input of awaited) {
    if (values.has(input)) continue
    const nodes = input.nodes.length === 1 ? input.nodes[0] : `${input.nodes.length} nodes`
    const about = [input.description, nodes].filter(Boolean).join('; ')
    const answer = await opts.ask?.(`${input.key} (${about})`, {secret: input.secret})
    if (answer === undefined || answer === '') missing.push(input)
    else values.set(input, answer)
  }
  if (missing.length > 0) throw missingError(dep, missing)

  const inputs: Inputs = {}
  for (const [input, value] of values) {
    if (input.secret && value !== '') dep.secrets.push(value)
    for (const node of input.nodes) ((inputs[node] ??= {})[input.service] ??= {})[input.param] = value
  }
  return inputs
}

function sameRole(input: PlanInput, target: string): boolean {
  return target === input.section || (roleOfSection(target) ?? target) === input.role
}

function matches(input: PlanInput, given: GivenValue): boolean {
  return sameRole(input, given.target) && given.service === input.service && given.param === input.param
}

/** Why a given value has nowhere to go: the param is set by the file, or there is no such param. */
function notAwaited(dep: InputsDeployment, given: GivenValue): Diagnostic {
  const key = `${given.target}.${given.service}.${given.param}`
  const role = roleOfSection(given.target) ?? given.target
  const node = dep.result.plan.nodes.find((n) => n.role === role)
  const step = node && dep.result.plan.steps.find((s) => s.node === node.name && s.service === given.service)
  const param = step?.params.find((p) => p.name === given.param)
  const awaited = dep.result.inputs.map((i) => i.key)
  const where = given.source ? {source: given.source} : {}
  // A values file's line is the diagnostic's source; a --set names itself.
  const lead = given.source ? '' : `${given.from}: `
  if (param) {
    const at = param.source ? ` at ${formatSource(param.source)}` : ''
    return {
      message: `${lead}${key} is not given at launch: its value is set${at}`,
      ...where,
      hint: `to give it at launch, write "${given.service}.${given.param} = ${INPUT_MARKER}" in its role's section of ${dep.file}`,
    }
  }
  // A guess is written the way the role was: `app.probe.db_host` for `app.probe.db_hots`.
  const written = dep.result.inputs.map((i) =>
    sameRole(i, given.target) ? `${given.target}.${i.service}.${i.param}` : i.key,
  )
  const guess = didYouMean(key, written)
  return {
    message: `${lead}${key} names no param of ${dep.file}`,
    ...where,
    hint: guess
      ? `did you mean ${guess}?`
      : awaited.length
        ? `the params given at launch: ${awaited.join(', ')}`
        : `${dep.file} leaves no param to launch time`,
  }
}

function missingError(dep: InputsDeployment, missing: PlanInput[]): UserError {
  const lines = missing.map((i) => {
    const about = [i.secret ? 'secret' : '', i.description].filter(Boolean).join(', ')
    return `  ${i.key}${about ? ` (${about})` : ''}${i.source ? `  ${formatSource(i.source)}` : ''}`
  })
  const n = missing.length
  return new UserError(
    [
      `${n} param${n === 1 ? '' : 's'} of ${dep.file} ${n === 1 ? 'is' : 'are'} given at launch and ${n === 1 ? 'has' : 'have'} no value; nothing was created or changed:`,
      ...lines,
      `  hint: give ${n === 1 ? 'it' : 'each'} with --set ${missing[0].key}=VALUE or in a --values file ([${missing[0].section}] ${missing[0].service}.${missing[0].param} = VALUE), or run on a terminal to be asked`,
    ].join('\n'),
    2,
  )
}
