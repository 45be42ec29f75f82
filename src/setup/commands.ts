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

/**
 * One round trip per step: skip it when the node recorded the same hash (printing `marker` and the
 * recorded outputs), else take the script from stdin, run it as root with $NODESET_OUTPUT, and only on
 * success record the hash and the outputs, so a failed step runs again next time.
 */
export function stepCommand(step: string, hash: string, env: StepEnv, opts: {force: boolean; marker: string}): string {
  const script = stepFile(step, 'sh')
  const fresh = stepFile(step, 'out.new')
  const out = stepFile(step, 'out')
  const recorded = stepFile(step, 'sha256')
  const vars = {
    NODESET_OUTPUT: fresh,
    NODESET_DEPLOYMENT: env.deployment,
    NODESET_NODE: env.node,
    NODESET_ROLE: env.role,
    NODESET_SERVICE: env.service,
  }
  const assignments = Object.entries(vars)
    .map(([k, v]) => `${k}=${shellQuote(v)}`)
    .join(' ')
  const skip = opts.force
    ? ''
    : `if [ "$(cat ${recorded} 2>/dev/null)" = ${shellQuote(hash)} ] && [ -e ${out} ]; then printf '%s\n' ${shellQuote(opts.marker)}; cat ${out}; exit 0; fi; `
  return (
    `umask 077; mkdir -p ${STEPS_DIR} || exit 1; ${skip}` +
    `cat > ${script}.new && mv -f ${script}.new ${script} && : > ${fresh} && cd / && ` +
    `env ${assignments} sh ${script} < /dev/null && mv -f ${fresh} ${out} && printf '%s\n' ${shellQuote(hash)} > ${recorded}`
  )
}

/** The outputs a step recorded on its last success. */
export const outputsCommand = (step: string): string => `cat ${stepFile(step, 'out')}`

/** `key=value` lines → outputs; other lines are ignored, a later key wins. */
export function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$/.exec(line.replace(/\r$/, ''))
    if (match) outputs[match[1]] = match[2]
  }
  return outputs
}
