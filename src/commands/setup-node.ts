import {Args, Flags} from '@oclif/core'
import {trustOnFirstUseFlag} from '../cli/flags.js'
import {NodesetCommand} from '../cli/base.js'
import {UserError} from '../core/errors.js'
import {progressView} from '../cli/progress.js'
import {openConfigServer} from '../operations/connect.js'
import {openDeployment} from '../operations/deployment.js'
import {setupVars} from '../plan/vars.js'
import {table} from '../plan/render.js'
import {setupNodes, StepMatrix, type StepReport} from '../setup/runner.js'
import {connect} from '../ssh/ssh.js'
import {applyOperatorEtcHosts} from '../operations/etchosts.js'

export default class SetupNode extends NodesetCommand {
  static summary = 'Set every node up over SSH: base layer, role map and hosts, then each service in dependency order.'
  static description = `On every node: a base layer (packages, directories), the wiring (/etc/nodeset/roles, roles.json and a managed block of /etc/hosts), then each service of its role, rendered with handlebars from the node's complete configuration and run as root. A (node, service) step starts as soon as the values it refers to are known; outputs a service writes to $NODESET_OUTPUT go to the config server and complete the steps waiting for them. Steps whose rendered content is unchanged are skipped (--force runs them).

A failing step is reported with the end of its output; what depends on it is "blocked by" it; every other node goes on; the exit code is 1. Logs: .nodeset/<deployment>/logs/<node>/<step>.log. Host keys are verified against the key each node reported when it phoned home.`
  static examples = [
    '<%= config.bin %> setup-node examples/local.conf',
    '<%= config.bin %> setup-node foobar.conf --concurrency 20 --json',
    'sudo <%= config.bin %> setup-node foobar.conf --etc-hosts',
  ]
  static args = {file: Args.string({description: 'The nodeset file.', required: true})}
  static flags = {
    'trust-on-first-use': trustOnFirstUseFlag,
    concurrency: Flags.integer({description: 'Steps run at once, across nodes.', default: 16, min: 1, max: 256}),
    force: Flags.boolean({description: 'Run every step even when unchanged.', default: false}),
    timeout: Flags.integer({
      description:
        'Seconds by which every service must have started; then the deployment is failed at the config server (nodeset status says why).',
      default: 1800,
      min: 1,
    }),
    'etc-hosts': Flags.boolean({
      description: "Also write the deployment's block into this machine's /etc/hosts.",
      default: false,
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(SetupNode)
    const deployment = openDeployment(args.file, {trustOnFirstUse: flags['trust-on-first-use']})
    this.secrets = deployment.nodeset.secrets
    const {plan} = deployment.result
    const records = (await deployment.provider.list(plan.deployment)).filter((r) => r.state !== 'terminated')
    const missing = plan.nodes.filter((n) => !records.some((r) => r.name === n.name)).map((n) => n.name)
    if (missing.length)
      throw new UserError(
        `these nodes do not exist yet: ${missing.join(', ')}; run nodeset create-node ${args.file} first`,
      )
    const {operatorAddress} = await deployment.prepare()
    const server = await openConfigServer(deployment.nodeset, deployment.workspace, operatorAddress)
    this.secrets.push(server.adminToken)
    const items = plan.nodes.map((n) => n.name)
    const progress = progressView(items, {json: flags.json, secrets: this.secrets})
    const matrix = new StepMatrix(plan.nodes.map((n) => ({node: n.name, steps: ['base', 'wiring', ...n.services]})))
    let reports: StepReport[]
    try {
      reports = await setupNodes({
        plan,
        catalog: deployment.catalog,
        records,
        server: server.client,
        connect: (record) =>
          connect(deployment.sshTarget(record), {hostKeys: deployment.hostKeyPolicy, retryForMs: 60_000}),
        logFile: (node, step) => deployment.workspace.logFile(node, step),
        vars: setupVars(deployment.nodeset),
        setEtcHosts: deployment.nodeset.general.setEtcHosts,
        concurrency: flags.concurrency,
        force: flags.force,
        startupTimeoutSec: flags.timeout,
        secrets: this.secrets,
        onEvent: (e) => {
          progress.event({...e})
          progress.update(e.node, matrix.record(e.node, e.step, e.status, e.message))
        },
      })
      for (const node of items) {
        const mine = reports.filter((r) => r.node === node)
        const bad = mine.filter((r) => r.status === 'failed' || r.status === 'blocked')
        progress.done(
          node,
          bad.length === 0,
          bad.length
            ? bad.map((r) => `${r.step} ${r.status}`).join(', ')
            : `${mine.filter((r) => r.status === 'done').length} ran, ${mine.filter((r) => r.status === 'skipped').length} unchanged`,
        )
      }
      await progress.finish()
      if (flags['etc-hosts']) applyOperatorEtcHosts(plan.deployment, (await server.client.state()).instances)
    } finally {
      await server.close()
    }
    const failed = reports.filter((r) => r.status === 'failed' || r.status === 'blocked')
    if (flags.json) this.printJson({type: 'result', ok: failed.length === 0, steps: reports})
    else {
      this.print(
        '\n' +
          table(
            ['NODE', 'STEP', 'RESULT', 'DETAIL'],
            reports.map((r) => [r.node, r.step, r.status, r.message ?? '']),
          ),
      )
      for (const r of reports.filter((r) => r.status === 'failed' && r.tail))
        this.print(`\n--- ${r.node} ${r.step} (last lines) ---\n${r.tail}`)
    }
    if (failed.length) {
      if (!flags.json)
        this.note(
          `\n${failed.length} step${failed.length === 1 ? '' : 's'} did not complete; fix the cause and re-run: finished steps are skipped.`,
        )
      this.exit(1)
    }
  }
}
