/**
 * The shell commands setup-node runs on a node, built as data so they are tested without a node.
 * Every step keeps its script, the hash of what it ran and its outputs under /var/lib/nodeset/steps.
 */
import {createHash} from 'node:crypto'
import {shellQuote} from '../core/quote.js'

export const STEPS_DIR = '/var/lib/nodeset/steps'

/** A step's name as its files are named. */
export const stepFileName = (step: string): string => step.replace(/[^A-Za-z0-9._-]/g, '_')

export const stepFile = (step: string, suffix: string): string => `${STEPS_DIR}/${stepFileName(step)}.${suffix}`

/** What a node recorded of a step's last success: the hash of its script and its outputs. */
export interface RecordedStep {
  hash: string
  outputs: string
}

/**
 * Every step a node recorded, in one round trip: a line `NAME HASH OUTPUTS` per step whose last run
 * succeeded (its outputs file exists, as stepCommand's skip requires), outputs in base64.
 */
export function recordedStepsCommand(): string {
  return (
    // Without base64 the outputs cannot be read back whole: exit non-zero, and each step asks for itself.
    `command -v base64 >/dev/null || exit 3; cd ${STEPS_DIR} 2>/dev/null || exit 0; ` +
    `for f in *.sha256; do [ -e "$f" ] || continue; s=\${f%.sha256}; [ -e "$s.out" ] || continue; ` +
    `o=$(base64 < "$s.out") || exit 3; printf '%s %s %s\\n' "$s" "$(cat "$f")" "$(printf '%s' "$o" | tr -d '\\n')"; done`
  )
}

/** recordedStepsCommand's output → each step file name's record. */
export function parseRecordedSteps(text: string): Map<string, RecordedStep> {
  const recorded = new Map<string, RecordedStep>()
  for (const line of text.split('\n')) {
    const [name, hash, outputs = ''] = line.split(' ')
    if (!name || !hash || !/^[0-9a-f]{64}$/.test(hash)) continue
    recorded.set(name, {hash, outputs: Buffer.from(outputs, 'base64').toString('utf8')})
  }
  return recorded
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

export interface StepEnv {
  deployment: string
  node: string
  role: string
  service: string
}

/** The lines a step command prints between the parts of its output, each `marker:part`. */
export const markerLine = (marker: string, part: MarkerPart): string => `${marker}:${part}\n`

type MarkerPart = 'recorded' | 'unchanged' | 'outputs' | 'next'

/**
 * One round trip per step. With `readRecorded`, it first prints what the node recorded of every step
 * (recordedStepsCommand's lines, before this step changes anything), then `marker:recorded`. Then it
 * skips the step when the node recorded the same hash (printing `marker:unchanged` and the recorded
 * outputs), else takes the script from stdin, runs it as root with $NODESET_OUTPUT, and only on
 * success records the hash and the outputs and prints `marker:outputs` and the outputs, so a failed
 * step runs again next time and its outputs need no second round trip. Shell builtins where they do:
 * every process started costs on a busy node.
 */
export function stepCommand(
  step: string,
  hash: string,
  env: StepEnv,
  opts: {force: boolean; marker: string; readRecorded?: boolean},
): string {
  return chainCommand([{step, hash, env, bytes: 0}], opts)
}

/** One step of a chain: its script is `bytes` long (UTF-8) in the command's input. */
export interface ChainedStep {
  step: string
  hash: string
  env: StepEnv
  bytes: number
}

/**
 * Steps of one node that run one after the other, in one round trip: each as stepCommand runs it, its
 * script taken from the input (the scripts one after another), `marker:next` on stdout and on stderr
 * between two steps. The first step that fails ends the command with its exit code.
 */
export function chainCommand(
  steps: readonly ChainedStep[],
  opts: {force: boolean; marker: string; readRecorded?: boolean},
): string {
  const say = (part: MarkerPart) => `printf '%s\n' ${shellQuote(`${opts.marker}:${part}`)}`
  // A listing that fails half way is still true as far as it goes: a step missing from it asks for itself.
  const header = opts.readRecorded ? `(${recordedStepsCommand()}) 2>/dev/null; ${say('recorded')}; ` : ''
  const bundle = `${STEPS_DIR}/.scripts.$$`
  const alone = steps.length === 1
  let offset = 1
  const parts = steps.map((s, i) => {
    const script = stepFile(s.step, 'sh')
    const take = alone ? `cat > ${script}` : `tail -c +${offset} "$b" | head -c ${s.bytes} > ${script}`
    offset += s.bytes
    const between = i > 0 ? `${say('next')}; ${say('next')} >&2; ` : ''
    return between + stepPart(s, take, opts.force, say)
  })
  const input = alone ? '' : `b=${bundle}; trap 'rm -f "$b"' EXIT; cat > "$b" || exit 1; `
  return `umask 077; [ -d ${STEPS_DIR} ] || mkdir -p ${STEPS_DIR} || exit 1; ${header}${input}cd / || exit 1; ${parts.join(' ')}`
}

/** One step inside chainCommand: skipped when unchanged, else its script taken by `take`, run, recorded. */
function stepPart(s: ChainedStep, take: string, force: boolean, say: (part: MarkerPart) => string): string {
  const script = stepFile(s.step, 'sh')
  const fresh = stepFile(s.step, 'out.new')
  const out = stepFile(s.step, 'out')
  const recorded = stepFile(s.step, 'sha256')
  const vars = {
    NODESET_OUTPUT: fresh,
    NODESET_DEPLOYMENT: s.env.deployment,
    NODESET_NODE: s.env.node,
    NODESET_ROLE: s.env.role,
    NODESET_SERVICE: s.env.service,
  }
  const assignments = Object.entries(vars)
    .map(([k, v]) => `${k}=${shellQuote(v)}`)
    .join(' ')
  // The script is kept as what ran last; only the hash and the outputs need an atomic update.
  const run =
    `${take} && : > ${fresh} && ${assignments} sh ${script} < /dev/null && mv -f ${fresh} ${out} && ` +
    `printf '%s\n' ${shellQuote(s.hash)} > ${recorded} && ${say('outputs')} && ${printLines(out)} || exit $?;`
  if (force) return run
  return (
    `if [ -e ${out} ] && [ -e ${recorded} ] && read -r h < ${recorded} && [ "$h" = ${shellQuote(s.hash)} ]; ` +
    `then ${say('unchanged')}; ${printLines(out)}; else ${run} fi;`
  )
}

/** Print a small file's lines with the shell alone (a last line without its end gets one). */
const printLines = (file: string): string =>
  `while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < ${file}`

/** `key=value` lines → outputs; other lines are ignored, a later key wins. */
export function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$/.exec(line.replace(/\r$/, ''))
    if (match) outputs[match[1]] = match[2]
  }
  return outputs
}
