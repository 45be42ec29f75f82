/** Run the built CLI (bin/run.js → dist/) as a user would, and reach local nodes over real SSH. */
import {execFile} from 'node:child_process'
import path from 'node:path'
import {promisify} from 'node:util'
import {localProviderProblem} from '../../src/providers/local-system.js'

export const ROOT = path.resolve(__dirname, '../..')
const BIN = path.join(ROOT, 'bin/run.js')

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export async function runCli(
  args: string[],
  opts: {env?: Record<string, string>; timeoutMs?: number; cwd?: string} = {},
): Promise<CliResult> {
  try {
    const {stdout, stderr} = await promisify(execFile)(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: {...process.env, ...opts.env},
      timeout: opts.timeoutMs ?? 240_000,
      maxBuffer: 64 * 1024 * 1024,
    })
    return {code: 0, stdout, stderr}
  } catch (error) {
    const e = error as {code: number | string; stdout?: string; stderr?: string}
    return {code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error)}
  }
}

/** Run a command on a node with OpenSSH itself, checking the host key against the pinned known_hosts. */
export async function sshRun(workspace: string, address: string, command: string): Promise<CliResult> {
  const args = [
    '-i',
    path.join(workspace, 'id_ed25519'),
    '-o',
    `UserKnownHostsFile=${path.join(workspace, 'known_hosts')}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=10',
    `root@${address}`,
    command,
  ]
  try {
    const {stdout, stderr} = await promisify(execFile)('ssh', args, {timeout: 60_000})
    return {code: 0, stdout, stderr}
  } catch (error) {
    const e = error as {code: number; stdout?: string; stderr?: string}
    return {code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? ''}
  }
}

/**
 * Whether tests that make local nodes run: always with CI=true (where a missing piece must fail them,
 * through the provider's own check in beforeAll), else only when the machine can make them.
 */
export async function mustRunLocalNodes(): Promise<boolean> {
  return process.env.CI === 'true' || (await localProviderProblem()) === undefined
}
