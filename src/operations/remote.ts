/**
 * ssh, exec and logs: reaching nodes by hand. `ssh` hands over to OpenSSH itself (so ~/.ssh/config,
 * ProxyJump and agent forwarding work as the user expects) with the node's host key checked against
 * what nodeset trusts for it, never trust-on-first-use; `exec` and `logs` use nodeset's own sessions.
 */
import fs from 'node:fs'
import path from 'node:path'
import pLimit from 'p-limit'
import {UserError} from '../core/errors.js'
import type {NodeRecord} from '../providers/provider.js'
import {shellQuote} from '../core/quote.js'
import {defaultSshConfigPath, lookupHost} from '../ssh/config.js'
import type {SshTarget} from '../ssh/login.js'
import type {OpenedDeployment} from './opened.js'

/** The nodes named, or the nodes of the roles named; every name must match something. */
export async function targetNodes(dep: OpenedDeployment, names: string[]): Promise<NodeRecord[]> {
  const records = await dep.liveNodes()
  const unknown = names.filter((n) => !records.some((r) => r.name === n || r.role === n))
  if (unknown.length) {
    const known = [...new Set(records.flatMap((r) => [r.role, r.name]))].join(', ') || 'none: run nodeset create-node'
    throw new UserError(`no node or role ${unknown.join(', ')} in deployment ${dep.name} (known: ${known})`, 2)
  }
  return records.filter((r) => names.includes(r.name) || names.includes(r.role))
}

/**
 * OpenSSH's argv for a shell (or a command) on a node, verifying its host key the provider's way.
 * The node's name is the host asked for, so \`Host\` and \`Match host\` blocks of ~/.ssh/config match it
 * as they do for setup; its address goes in as HostName.
 */
export async function sshArgv(
  dep: OpenedDeployment,
  node: NodeRecord,
  command: string[],
  tty: boolean,
): Promise<string[]> {
  const target = dep.provider.sshTarget(node)
  const policy = dep.provider.hostKeyPolicy()
  // Nodes nodeset created are known only by their pinned keys; static servers also by the user's files.
  const knownHosts = [dep.hostKeys.path, ...(policy.mode === 'static' ? ['~/.ssh/known_hosts'] : [])]
  const argv = ['-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts.join(' ')}`]
  if (policy.mode === 'pinned') argv.push('-o', 'GlobalKnownHostsFile=/dev/null')
  if (target.privateKeyPath) argv.push('-i', target.privateKeyPath)
  const user = target.user ?? (target.defaultUser && !(await configuredUser(target)) ? target.defaultUser : undefined)
  if (user) argv.push('-l', user)
  if (target.port) argv.push('-p', String(target.port))
  if (target.host !== target.nodeName) argv.push('-o', `HostName=${target.host}`)
  if (tty && command.length === 0) argv.push('-t')
  argv.push(target.nodeName)
  if (command.length) argv.push('--', command.map((word) => shellQuote(word)).join(' '))
  return argv
}

/** The User ~/.ssh/config (or the system's file) gives the node, if any. */
async function configuredUser(target: SshTarget): Promise<string | undefined> {
  const query = {host: target.nodeName, ...(target.host === target.nodeName ? {} : {hostName: target.host})}
  return (await lookupHost(query, {path: defaultSshConfigPath(), system: true})).user
}

export interface ExecOutcome {
  node: string
  code: number
  stdout: string
  stderr: string
  /** Why the command could not run at all (unreachable, refused host key…). */
  error?: string
}

export interface ExecOptions {
  concurrency?: number
  /** Each chunk of output as it arrives. */
  onOutput?(node: string, chunk: string, stream: 'stdout' | 'stderr'): void
}

/** Run a shell command on every target node at once, as root; every node's outcome, in target order. */
export async function execOn(
  dep: OpenedDeployment,
  nodes: NodeRecord[],
  command: string,
  opts: ExecOptions = {},
): Promise<ExecOutcome[]> {
  const limit = pLimit(opts.concurrency ?? 16)
  return Promise.all(
    nodes.map((node) =>
      limit(async (): Promise<ExecOutcome> => {
        try {
          const session = await dep.session(node)
          const onOutput = (chunk: string, stream: 'stdout' | 'stderr') => opts.onOutput?.(node.name, chunk, stream)
          const result = await session.exec(command, {label: 'exec', onOutput})
          return {node: node.name, code: result.code, stdout: result.stdout, stderr: result.stderr}
        } catch (error) {
          return {node: node.name, code: -1, stdout: '', stderr: '', error: (error as Error).message}
        }
      }),
    ),
  )
}

/** The logs nodeset keeps of a node: setup's step logs here, the agent's and services' on the node. */
export interface LogFiles {
  /** Step logs in the workspace (the last setup-node run of each step). */
  local: string[]
  /** Files on the node. */
  remote: string[]
}

export function logFiles(dep: OpenedDeployment, node: string, service?: string): LogFiles {
  const dir = dep.workspace.logDir(node)
  const local = fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.log') && (!service || f === `${service}.log`))
        .map((f) => path.join(dir, f))
    : []
  const remote = service
    ? [`/var/log/nodeset/${service}.log`, `/var/log/nodeset/${service}`]
    : ['/var/log/nodeset-agent.log']
  return {local, remote}
}

/** The shell command that prints (or follows) the node's log files that exist. */
export function remoteLogCommand(files: string[], follow: boolean, lines = 200): string {
  const list = files.map((f) => shellQuote(f)).join(' ')
  // A directory stands for the .log files in it (nginx's access and error logs).
  const expand = `set --; for f in ${list}; do if [ -d "$f" ]; then for g in "$f"/*.log; do [ -f "$g" ] && set -- "$@" "$g"; done; elif [ -f "$f" ]; then set -- "$@" "$f"; fi; done`
  const none = `[ $# -gt 0 ] || { echo 'no such log on this node' >&2; exit 3; }`
  return `${expand}; ${none}; exec tail -n ${lines}${follow ? ' -F' : ''} -- "$@"`
}
