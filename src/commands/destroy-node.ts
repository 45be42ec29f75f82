import {createInterface} from 'node:readline/promises'
import {Args, Flags} from '@oclif/core'
import {trustOnFirstUseFlag} from '../cli/flags.js'
import {NodesetCommand} from '../cli/base.js'
import {UserError} from '../core/errors.js'
import {openConfigServer} from '../operations/connect.js'
import {openDeployment} from '../operations/deployment.js'
import {destroyNodes} from '../operations/nodes.js'
import {applyOperatorEtcHosts, hasHostsBlock} from '../operations/etchosts.js'
import {rewire} from '../operations/rewire.js'
import type {StepReport} from '../setup/runner.js'

export default class DestroyNode extends NodesetCommand {
  static summary = 'Terminate nodes, and forget them in the config server, the hosts maps and the pinned host keys.'
  static description = `Without NODE names, every node of the deployment (planned or not) is destroyed. Asks first unless --yes. The nodes that stay are rewired at once: their role maps and hosts blocks (and this machine's, when it has the block) forget the destroyed ones; run setup-node to update services that depend on membership, such as the balancer.`
  static examples = [
    '<%= config.bin %> destroy-node examples/local.conf --yes',
    '<%= config.bin %> destroy-node foobar.conf app3.foobar.com',
  ]
  static strict = false
  static args = {
    file: Args.string({description: 'The nodeset file.', required: true}),
    node: Args.string({description: 'Node names (default: all).', required: false}),
  }
  static flags = {
    'trust-on-first-use': trustOnFirstUseFlag,
    yes: Flags.boolean({char: 'y', description: 'Do not ask for confirmation.', default: false}),
  }

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(DestroyNode)
    const names = (argv as string[]).slice(1)
    const deployment = openDeployment(args.file, {trustOnFirstUse: flags['trust-on-first-use']})
    this.secrets = deployment.nodeset.secrets
    const records = (await deployment.provider.list(deployment.result.plan.deployment)).filter(
      (r) => r.state !== 'terminated',
    )
    const unknown = names.filter((n) => !records.some((r) => r.name === n))
    if (unknown.length)
      throw new UserError(
        `no such node in deployment ${deployment.result.plan.deployment}: ${unknown.join(', ')} (see nodeset list-nodes)`,
      )
    const targets = names.length ? records.filter((r) => names.includes(r.name)) : records
    if (targets.length === 0) {
      if (flags.json) return this.printJson({destroyed: []})
      return this.print('nothing to destroy')
    }
    if (!flags.yes) {
      if (!process.stdin.isTTY)
        throw new UserError(`destroying ${targets.length} node(s) needs confirmation: pass --yes`)
      const rl = createInterface({input: process.stdin, output: process.stderr})
      const answer = await rl.question(`Destroy ${targets.map((t) => t.name).join(', ')}? [y/N] `)
      rl.close()
      if (!/^y(es)?$/i.test(answer.trim())) throw new UserError('nothing destroyed')
    }
    const {operatorAddress} = await deployment.prepare()
    const server = await openConfigServer(deployment.nodeset, deployment.workspace, operatorAddress)
    this.secrets.push(server.adminToken)
    const remaining = records.filter((r) => !targets.includes(r))
    let rewired: StepReport[] = []
    try {
      await destroyNodes({provider: deployment.provider, server: server.client, hostKeys: deployment.hostKeys}, targets)
      // The nodes that stay forget the destroyed ones: role maps and hosts blocks, here and on them.
      if (remaining.length > 0) rewired = await rewire(deployment, server.client, remaining, this.secrets)
      if (hasHostsBlock(deployment.result.plan.deployment))
        applyOperatorEtcHosts(deployment.result.plan.deployment, (await server.client.state()).instances)
    } finally {
      await server.close()
    }
    const failed = rewired.filter((r) => r.status === 'failed')
    if (flags.json)
      this.printJson({
        destroyed: targets.map((t) => t.name),
        rewired: rewired.map((r) => ({node: r.node, status: r.status, message: r.message})),
      })
    else {
      this.print(`destroyed ${targets.map((t) => t.name).join(', ')}`)
      if (rewired.length)
        this.print(
          `rewired ${
            rewired
              .filter((r) => r.status !== 'failed')
              .map((r) => r.node)
              .join(', ') || 'no node'
          }`,
        )
      for (const r of failed) this.note(`could not rewire ${r.node}: ${r.message}; run nodeset setup-node ${args.file}`)
    }
    if (failed.length) this.exit(1)
  }
}
