import {Args, Flags} from '@oclif/core'
import {trustOnFirstUseFlag} from '../cli/flags.js'
import {NodesetCommand} from '../cli/base.js'
import {UserError} from '../core/errors.js'
import {progressView} from '../cli/progress.js'
import {ConfigServerError} from '../configserver/client.js'
import {DiagnosticsError} from '../core/diagnostics.js'
import {openConfigServer} from '../operations/connect.js'
import {openDeployment} from '../operations/deployment.js'
import {BootTimeoutError, createNodes, type NodeRow} from '../operations/nodes.js'
import {table} from '../plan/render.js'

export default class CreateNode extends NodesetCommand {
  static summary = 'Create the nodes the nodeset file describes, boot them, and wait until each has phoned home.'
  static description = `Reconciles the provider with the plan: creates the nodes that are missing (raise "nodes" and re-run to scale up), never duplicates one that exists (a re-run is a no-op), and lists nodes the file no longer has (removed only with --prune). Registers the deployment with the config server, boots each new node with user data that phones home, and by default waits until every node has, within [general] boot_timeout; then pins each node's SSH host key as it reported it.

The file is checked first: a bad file creates nothing (exit code 2).`
  static examples = [
    '<%= config.bin %> create-node examples/local.conf',
    '<%= config.bin %> create-node foobar.conf --prune --json',
  ]
  static args = {file: Args.string({description: 'The nodeset file.', required: true})}
  static flags = {
    'trust-on-first-use': trustOnFirstUseFlag,
    prune: Flags.boolean({
      description: 'Destroy nodes of this deployment that the file no longer has.',
      default: false,
    }),
    wait: Flags.boolean({
      description: 'Wait until every node has phoned home (--no-wait to return once created).',
      default: true,
      allowNo: true,
    }),
    'rollback-on-failure': Flags.boolean({
      description: 'When a node does not phone home in time, destroy the nodes this run created.',
      default: false,
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(CreateNode)
    const deployment = openDeployment(args.file, {trustOnFirstUse: flags['trust-on-first-use']})
    this.secrets = deployment.nodeset.secrets
    const {plan} = deployment.result
    const progress = progressView(
      plan.nodes.map((n) => n.name),
      {json: flags.json, secrets: this.secrets},
    )
    const {operatorAddress} = await deployment.prepare()
    const server = await openConfigServer(deployment.nodeset, deployment.workspace, operatorAddress)
    this.secrets.push(server.adminToken)
    let rows: NodeRow[]
    try {
      rows = await createNodes(
        {
          plan,
          provider: deployment.provider,
          server: server.client,
          nodeUrl: server.nodeUrl,
          hostKeys: deployment.hostKeys,
          bootTimeoutSec: deployment.nodeset.general.bootTimeoutSec,
          onEvent: (e) => {
            progress.event(e)
            if (e.type === 'plan') {
              for (const n of e.missing) progress.update(n, 'creating')
              for (const n of e.existing) progress.update(n, 'exists')
              for (const n of e.extras)
                this.note(`${n} is not in ${args.file}${flags.prune ? '; destroying it' : '; --prune destroys it'}`)
            } else if (e.type === 'created')
              progress.update(
                e.node,
                `created (${e.id}${e.address ? `, ${e.address}` : ''}), waiting for it to phone home`,
              )
            else if (e.type === 'phoned-home') progress.done(e.node, true, `phoned home from ${e.address ?? '?'}`)
            else if (e.type === 'rolled-back') progress.done(e.node, false, 'rolled back')
          },
        },
        {prune: flags.prune, wait: flags.wait, rollbackOnFailure: flags['rollback-on-failure']},
      )
      for (const r of rows) progress.done(r.name, true, r.phonedHome ? `phoned home from ${r.address ?? '?'}` : r.state)
      await progress.finish()
    } catch (error) {
      await progress.finish()
      if (error instanceof BootTimeoutError) {
        this.printRows(error.rows, flags.json)
        throw new UserError(error.message)
      }
      if (error instanceof ConfigServerError && error.diagnostics.length) throw new DiagnosticsError(error.diagnostics)
      throw error
    } finally {
      await server.close()
    }
    this.printRows(rows, flags.json)
  }

  private printRows(rows: NodeRow[], json: boolean): void {
    if (json) return this.printJson({type: 'result', nodes: rows})
    this.print(
      '\n' +
        table(
          ['NODE', 'ROLE', 'ID', 'ADDRESS', 'STATE', 'PHONED HOME'],
          rows.map((r) => [
            r.name,
            r.role,
            r.id ?? '-',
            r.address ?? '-',
            r.createdNow ? `${r.state} (new)` : r.state,
            r.phonedHome ?? 'no',
          ]),
        ),
    )
  }
}
