// The floor of the benchmarks that reach local nodes: OpenSSH's `ssh node true` to every node at
// once, with the deployment's own key and pinned host keys (never trusting a new key).
import {execFile} from 'node:child_process'
import path from 'node:path'
import {promisify} from 'node:util'

const run = promisify(execFile)

/** Seconds for `ssh root@ADDRESS true` to every address in parallel; `workspace` is the deployment's .nodeset/NAME. */
export async function sshTrueSeconds(workspace, addresses) {
  const args = (address) => [
    '-i',
    path.join(workspace, 'id_ed25519'),
    '-o',
    `UserKnownHostsFile=${path.join(workspace, 'known_hosts')}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    `root@${address}`,
    'true',
  ]
  const start = process.hrtime.bigint()
  await Promise.all(addresses.map((address) => run('ssh', args(address))))
  return Number(process.hrtime.bigint() - start) / 1e9
}
