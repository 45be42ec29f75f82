import * as Args from '@oclif/core/args'
import {NodesetCommand} from '../cli/base.js'
import {previewText} from '../cli/views.js'
import {loadPlan} from '../operations/load.js'
import {Workspace} from '../operations/workspace.js'
import {DiagnosticsError, formatDiagnostic} from '../core/diagnostics.js'
import {planJson, planText} from '../plan/render.js'
import {sitesText, withSites} from '../plan/sites.js'

export default class Plan extends NodesetCommand {
  static summary = 'Show the nodes, services and references a nodeset file describes, and check them.'
  static description = `Reads the nodeset file (extends and \${…} interpolation included), names every node, gives each its services and their params, finds every reference between (node, service) pairs, and checks that nothing waits on itself (a cycle) and that every reference names something that exists. Nothing is created.

Exit codes: 0 the plan is good; 2 the file is refused (every problem is printed with file:line and a hint). Secrets (provider secret, secret_file contents, *password*/*secret*/*token* values) are never printed.`
  static examples = [
    '<%= config.bin %> plan examples/foobar.conf',
    '<%= config.bin %> plan examples/foobar.conf --json | jq .nodes',
  ]
  static args = {file: Args.string({description: 'The nodeset file (e.g. foobar.conf).', required: true})}
  static opensDeployment = false

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Plan)
    const loaded = loadPlan(args.file)
    const {nodeset, result, warnings} = loaded
    // What exists is asked of the provider only when the deployment has state here (it was created from here).
    const created = new Workspace(nodeset.file, nodeset.general.name).exists()
    const state = created
      ? await (await import('../operations/preview.js')).existingState(args.file, loaded)
      : undefined
    this.secrets = nodeset.secrets
    const {problems} = result.analysis
    if (flags.json) {
      const shape = problems.length ? {type: 'error', diagnostics: problems} : {type: 'plan'}
      this.printJson({
        ...shape,
        ...(withSites(planJson(nodeset, result), result.plan) as object),
        warnings,
        ...(state ? {state} : {}),
      })
      if (problems.length) this.exit(2)
      return
    }
    this.print(planText(nodeset, result))
    if (result.plan.sites?.length) this.print('\n' + sitesText(result.plan))
    if (state) this.print('\n' + previewText(state, {prune: false, title: `${state.deployment} now`}))
    for (const w of warnings) this.note(`warning: ${formatDiagnostic(w)}`)
    if (problems.length > 0) throw new DiagnosticsError(problems)
  }
}
