/**
 * The shell commands setup-node runs on a node, built as data so they are tested without a node.
 * Every step keeps its script, the hash of what it ran and its outputs under /var/lib/nodeset/steps.
 */
import {createHash} from 'node:crypto'
import {shellQuote} from './ssh-shell.js'

export const STEPS_DIR = '/var/lib/nodeset/steps'

export const stepFile = (step: string, suffix: string): string => `${STEPS_DIR}/${step.replace(/[^A-Za-z0-9._-]/g, '_')}.${suffix}`

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** Prints the recorded hash on the first line, then the recorded outputs. */
export function recordedStateCommand(step: string): string {
  return `cat ${stepFile(step, 'sha256')} 2>/dev/null; echo; cat ${stepFile(step, 'out')} 2>/dev/null; true`

}

export function parseRecordedState(stdout: string): {hash?: string; outputs: string} {
  const newline = stdout.indexOf('\n')
  const hash = (newline < 0 ? stdout : stdout.slice(0, newline)).trim()
  return {hash: /^[0-9a-f]{64}$/.test(hash) ? hash : undefined, outputs: newline < 0 ? '' : stdout.slice(newline + 1)}
}

export interface StepEnv {
  deployment: string
  node: string
  role: string
  service: string
}

/**
 * Run an uploaded step script as root with $NODESET_OUTPUT; only a success records the hash and
 * the outputs, so a failed step runs again next time.
 */
export function runStepCommand(step: string, hash: string, env: StepEnv): string {
  const script = stepFile(step, 'sh')
  const fresh = stepFile(step, 'out.new')
  const vars = {NODESET_OUTPUT: fresh, NODESET_DEPLOYMENT: env.deployment, NODESET_NODE: env.node, NODESET_ROLE: env.role, NODESET_SERVICE: env.service}
  const assignments = Object.entries(vars)
    .map(([k, v]) => `${k}=${shellQuote(v)}`)
    .join(' ')
  return [
    `umask 077`,
    `: > ${fresh}`,
    `cd /`,
    `env ${assignments} sh ${script}`,
    `mv ${fresh} ${stepFile(step, 'out')}`,
    `printf '%s\\n' ${shellQuote(hash)} > ${stepFile(step, 'sha256')}`,
  ].join(' && ')
}

/** `key=value` lines → outputs; other lines are ignored, a later key wins. */
export function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$/.exec(line.replace(/\r$/, ''))
    if (match) outputs[match[1]] = match[2]
  }
  return outputs
}

/** Write a file through a temp file in the same directory, keeping it private until it is complete. */
export function writeFileCommand(path: string, mode = '0644'): string {
  const dir = path.slice(0, path.lastIndexOf('/')) || '/'
  return `mkdir -p ${shellQuote(dir)} && t=$(mktemp ${shellQuote(`${path}.XXXXXX`)}) && cat > "$t" && chmod ${mode} "$t" && mv -f "$t" ${shellQuote(path)}`
}

/** Replace a file's content in place: /etc/hosts may be a bind mount, which a rename cannot replace. */
export function overwriteInPlaceCommand(path: string): string {
  return `cat > ${shellQuote(path)}`
}
