import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, inputFlags, trustOnFirstUseFlag, deploymentFlags} from '../cli/flags.js'
import {setupText} from '../cli/views.js'
import {DEFAULT_CONCURRENCY, failedSteps, setup} from '../operations/setup.js'
import {DEFAULT_SETUP_TIMEOUT_SEC} from '../setup/runner.js'

export default class SetupNode extends NodesetCommand {
  static summary = 'Set every node up over SSH: base layer, role map and hosts, then each service in dependency order.'
  static description = `On every node: a base layer (packages, directories), the wiring (/etc/nodeset/roles, roles.json and a managed block of /etc/hosts), then each service of its role, rendered with handlebars from the node's complete configuration and run as root. A (node, service) step starts as soon as the values it refers to are known; outputs a service writes to $NODESET_OUTPUT go to the config server and complete the steps waiting for them. Steps whose rendered content is unchanged are skipped (--force runs them).

A failing step is reported with the end of its output; what depends on it is "blocked by" it; every other node goes on; the exit code is 1. Logs: .nodeset/<deployment>/logs/<node>/<step>.log. Host keys are verified against the key each node reported when it phoned home.`
  static examples = [
    '<%= config.bin %> setup-node examples/local.conf',
    '<%= config.bin %> setup-node foobar.conf --concurrency 20 --json',
    'sudo <%= config.bin %> setup-node foobar.conf --etc-hosts',
  ]
  static args = {file: fileArg}
  static flags = {
    ...deploymentFlags,
    'trust-on-first-use': trustOnFirstUseFlag,
    ...inputFlags,
    concurrency: Flags.integer({
      description: 'Steps run at once, across nodes.',
      default: DEFAULT_CONCURRENCY,
      min: 1,
      max: 256,
    }),
    force: Flags.boolean({description: 'Run every step even when unchanged.', default: false}),
    timeout: Flags.integer({
      description:
        'Seconds by which every service must have started; then the deployment is failed at the config server (nodeset status says why).',
      default: DEFAULT_SETUP_TIMEOUT_SEC,
      min: 1,
    }),
    'etc-hosts': Flags.boolean({
      description: "Also write the deployment's block into this machine's /etc/hosts.",
      default: false,
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(SetupNode)
    const dep = this.openDeployment(args.file, flags)
    const options = {
      sets: flags.set ?? [],
      valuesFile: flags.values,
      concurrency: flags.concurrency,
      force: flags.force,
      timeoutSec: flags.timeout,
      etcHosts: flags['etc-hosts'],
    }
    const reports = await setup(dep, options)
    const failed = failedSteps(reports)
    if (flags.json) this.printJson({type: 'result', ok: failed.length === 0, steps: reports})
    else this.print(setupText(reports))
    if (failed.length === 0) return
    const steps = `${failed.length} step${failed.length === 1 ? '' : 's'}`
    if (!flags.json) this.note(`\n${steps} did not complete; fix the cause and re-run: finished steps are skipped.`)
    this.exit(1)
  }
}
