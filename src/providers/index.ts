/**
 * The providers behind one factory: the `[provider]` settings of a nodeset are parsed and checked
 * by the provider of that kind (every problem with its file:line), then that provider is built for
 * the deployment. Nothing outside src/providers/ needs to know which kind it has. Checking makes no
 * call and builds no client: `plan` runs the same checks as the commands that reach the provider.
 */
import path from 'node:path'
import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import {UserError} from '../core/errors.js'
import type {Nodeset, ProviderKind} from '../nodeset/types.js'
import type {Plan} from '../plan/types.js'
import {Ec2Provider} from './ec2.js'
import {ec2OptionProblems, instanceTypeProblem} from './ec2-options.js'
import {ec2Settings} from './ec2-settings.js'
import {LocalProvider} from './local.js'
import {localSettings} from './local-settings.js'
import type {Provider, ProviderContext} from './provider.js'
import {StaticProvider} from './static.js'
import {staticSettings} from './static-settings.js'

export type {NodeRecord, NodeRequest, Provider, ProviderContext} from './provider.js'

/**
 * Parse and check the settings (throwing DiagnosticsError); what it returns builds the provider.
 * Without a plan, the checks that need the planned nodes are left out.
 */
type Kind = (nodeset: Nodeset, plan: Plan | undefined) => (ctx: ProviderContext) => Provider

const KINDS: Record<ProviderKind, Kind> = {
  local: (nodeset) => {
    const settings = localSettings(nodeset)
    // The operator's key is made when a node first needs it, not by commands that only read.
    return (ctx) =>
      new LocalProvider({
        deployment: ctx.deployment,
        ...settings,
        authorizedKeys: () => [ctx.sshKey().publicKey],
        privateKeyPath: path.join(ctx.stateDir, 'id_ed25519'), // where ctx.sshKey() keeps it
        hostKeys: ctx.hostKeys,
      })
  },
  ec2: (nodeset) => {
    const problems = roleSizeProblems(nodeset)
    let settings: ReturnType<typeof ec2Settings> | undefined
    try {
      settings = ec2Settings(nodeset.provider.settings, nodeset.provider.source)
    } catch (error) {
      if (!(error instanceof DiagnosticsError)) throw error
      problems.unshift(...error.diagnostics)
    }
    if (!settings || problems.length) throw new DiagnosticsError(problems)
    const {options, sshKey} = settings
    return (ctx) =>
      new Ec2Provider({
        ...options,
        ...awsFlags(ctx.aws),
        deployment: ctx.deployment,
        hostKeys: ctx.hostKeys,
        sshKey,
      })
  },
  // Servers that already exist, reached over SSH; host keys from known_hosts or pinned on first use.
  static: (nodeset, plan) => {
    const settings = staticSettings(nodeset, plan)
    return (ctx) =>
      new StaticProvider({
        deployment: ctx.deployment,
        ...settings,
        stateDir: ctx.stateDir,
        hostKeys: ctx.hostKeys,
        trustOnFirstUse: ctx.trustOnFirstUse,
      })
  },
}

/**
 * Parse and check [provider] settings (DiagnosticsError with file:line on bad settings) and build the
 * provider. --profile/--region (ctx.aws) are refused, exit code 2, when malformed or when the provider
 * is not ec2.
 */
export function openProvider(nodeset: Nodeset, plan: Plan, ctx: ProviderContext): Provider {
  const build = KINDS[nodeset.provider.kind](nodeset, plan)
  const flags = Object.entries(ctx.aws ?? {}).filter(([, v]) => v !== undefined)
  if (flags.length && nodeset.provider.kind !== 'ec2')
    throw new UserError(
      `${flags.map(([k]) => `--${k}`).join(' and ')} only apply to provider ec2; this nodeset's provider is ${nodeset.provider.kind}`,
      2,
    )
  return build(ctx)
}

/** The same checks without building anything or calling anyone (for `plan`, offline). */
export function checkProviderSettings(nodeset: Nodeset, plan?: Plan): Diagnostic[] {
  try {
    KINDS[nodeset.provider.kind](nodeset, plan)
    return []
  } catch (error) {
    if (error instanceof DiagnosticsError) return error.diagnostics
    throw error
  }
}

/** What will not work as the file stands, though nothing in it is malformed: said, not refused. */
export function providerWarnings(nodeset: Nodeset): Diagnostic[] {
  if (nodeset.provider.kind !== 'ec2' || nodeset.general.configServer !== 'embedded') return []
  return [
    {
      message:
        'EC2 nodes cannot reach a config server embedded in the command on your machine: create-node and up will refuse',
      source: nodeset.provider.settings.provider?.source ?? nodeset.provider.source,
      hint: 'run "nodeset config-server" on a host the nodes reach, and set [general] config_server = URL',
    },
  ]
}

/** --profile and --region, checked like the keys they stand in for. */
function awsFlags(aws: ProviderContext['aws']): {profile?: string; region?: string} {
  const flags = {...(aws?.profile ? {profile: aws.profile} : {}), ...(aws?.region ? {region: aws.region} : {})}
  const problems = ec2OptionProblems({image: {kind: 'name', pattern: '*'}, ...flags})
  if (problems.length)
    throw new UserError(
      problems.map((p) => `--${p.setting}: ${p.message}${p.hint ? ` (${p.hint})` : ''}`).join('\n'),
      2,
    )
  return flags
}

/** A role's own `size` on ec2 must name an instance type EC2 could know. */
function roleSizeProblems(nodeset: Nodeset): Diagnostic[] {
  return nodeset.roles.flatMap((role) => {
    const p = role.size ? instanceTypeProblem(role.size.value) : undefined
    return p ? [{message: p.message, source: role.size!.source, hint: p.hint}] : []
  })
}
