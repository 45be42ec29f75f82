/** `setup-node --etc-hosts`: the deployment's block in the operator's own /etc/hosts. */
import fs from 'node:fs'
import type {DeploymentState} from '../configserver/protocol.js'
import {hasHostsBlock as hasBlock, mergeHostsBlock} from '../core/hostsblock.js'
import {renderHostsBlock} from '../plan/wiring.js'

export function applyOperatorEtcHosts(
  deployment: string,
  instances: DeploymentState['instances'],
  file = '/etc/hosts',
): void {
  const members = instances.map((i) => ({
    name: i.id,
    role: i.role,
    index: i.index ?? 1,
    ip: typeof i.facts.ip === 'string' ? i.facts.ip : undefined,
  }))
  const current = fs.readFileSync(file, 'utf8')
  const next = mergeHostsBlock(current, deployment, renderHostsBlock(deployment, members))
  if (next !== current) fs.writeFileSync(file, next)
}

/** Whether the operator's hosts file has the deployment's block (written by `setup-node --etc-hosts`). */
export function hasHostsBlock(deployment: string, file = '/etc/hosts'): boolean {
  try {
    return hasBlock(fs.readFileSync(file, 'utf8'), deployment)
  } catch {
    return false
  }
}
