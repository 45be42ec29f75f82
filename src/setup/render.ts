/**
 * The script each step runs, rendered on the operator's machine: the base layer's template, the
 * wiring script (role map, roles.json and the hosts block), or a service's template with its params.
 */
import fs from 'node:fs'
import path from 'node:path'
import {hostsMergeScript} from '../core/hostsblock.js'
import {renderTemplate, type World} from '../plan/template.js'
import type {Inputs} from '../plan/types.js'
import {renderHostsBlock, renderRoleMap, renderRolesJson, type RoleMember} from '../plan/wiring.js'
import {type Catalog, TEMPLATES_DIR} from '../services/catalog.js'
import {BASE_STEP, type Step, WIRING_STEP} from './steps.js'

export interface RenderContext {
  deployment: string
  catalog: Catalog
  /** Values rendered into the root context of every template (general, locations, hostnames…). */
  vars: Record<string, unknown>
  setEtcHosts: boolean
  /** The values of secret params are added here as they are rendered. */
  secrets: string[]
  /** Values of the params given at launch: inputs[node][service][param]. */
  inputs?: Inputs
}

/** The wiring step's script: role map, roles.json, and the managed block of /etc/hosts. */
export function wiringScript(deployment: string, list: RoleMember[], setEtcHosts: boolean): string {
  const heredoc = (file: string, content: string) =>
    `cat > ${file}.new <<'NODESET_EOF'\n${content}NODESET_EOF\nmv -f ${file}.new ${file}\n`
  let script =
    '#!/bin/sh\nset -eu\nmkdir -p /etc/nodeset\n' +
    heredoc('/etc/nodeset/roles', renderRoleMap(list)) +
    heredoc('/etc/nodeset/roles.json', renderRolesJson(list))
  if (setEtcHosts) {
    script +=
      hostsMergeScript(deployment) +
      `cat > /etc/nodeset/hosts.block <<'NODESET_EOF'\n${renderHostsBlock(deployment, list)}NODESET_EOF\n` +
      'merge_hosts /etc/hosts /etc/nodeset/hosts.block /etc/nodeset/hosts.new\nrm -f /etc/nodeset/hosts.block\n'
  }
  return script
}

const baseTemplate = (): string => fs.readFileSync(path.join(TEMPLATES_DIR, 'base', 'setup.sh.hbs'), 'utf8')

/** The script of one step on its node, from the world as it is now. */
export function renderStep(ctx: RenderContext, step: Step, world: World, list: RoleMember[]): string {
  const self = world.nodes.find((n) => n.name === step.node)!
  const vars = {
    ...ctx.vars,
    ...self.facts,
    deployment: ctx.deployment,
    name: self.name,
    role: self.role,
    index: self.index,
    n: self.index,
    facts: self.facts,
  }
  if (step.name === BASE_STEP) return renderTemplate(baseTemplate(), world, vars)
  if (step.name === WIRING_STEP) return wiringScript(ctx.deployment, list, ctx.setEtcHosts)
  // A param given at launch is its value as given: never rendered (a password may hold `{{`).
  const given = ctx.inputs?.[step.node]?.[step.plan!.service] ?? {}
  const params = Object.fromEntries(
    step.plan!.params.map((p) => [p.name, p.input ? (given[p.name] ?? '') : renderTemplate(p.value, world, vars)]),
  )
  for (const p of step.plan!.params) if (p.secret && params[p.name]) ctx.secrets.push(params[p.name])
  const meta = ctx.catalog.get(step.plan!.service)!
  return renderTemplate(meta.script, world, {...vars, params}, meta.partials)
}
