import {Args, Flags} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {UserError} from '../core/errors.js'
import type {DeploymentStatus} from '../configserver/protocol.js'
import {openConfigServer} from '../operations/connect.js'
import {openDeployment} from '../operations/deployment.js'
import {statusText} from '../operations/status.js'

export default class Status extends NodesetCommand {
  static summary = "Show the deployment's state at the config server: every node, every service, what each waits for."
  static description = `Per node: its address as the config server saw it and its first and last phone-home. Per service: waiting (and on what), ready, running, succeeded, failed or timed out. The deployment is pending, settled (every service succeeded) or failed (a failure, or the start-up deadline passed).

With --wait, returns when the deployment settles (exit 0) or fails (exit 1).`
  static examples = [
    '<%= config.bin %> status examples/local.conf',
    '<%= config.bin %> status foobar.conf --wait --json',
  ]
  static args = {file: Args.string({description: 'The nodeset file.', required: true})}
  static flags = {
    wait: Flags.boolean({description: 'Wait until the deployment settles or fails.', default: false}),
    timeout: Flags.integer({description: 'With --wait: give up after this many seconds.', default: 3600}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Status)
    const deployment = openDeployment(args.file)
    this.secrets = deployment.nodeset.secrets
    const {operatorAddress} = await deployment.prepare()
    const server = await openConfigServer(deployment.nodeset, deployment.workspace, operatorAddress)
    this.secrets.push(server.adminToken)
    let status: DeploymentStatus
    try {
      status = await server.client.status()
      const deadline = Date.now() + flags.timeout * 1000
      while (flags.wait && status.state === 'pending' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        status = await server.client.status()
      }
    } catch (error) {
      if ((error as {status?: number}).status === 404)
        throw new UserError(
          `deployment ${deployment.result.plan.deployment} is not registered yet: run nodeset create-node ${args.file}`,
        )
      throw error
    } finally {
      await server.close()
    }
    if (flags.json) this.printJson(status)
    else this.print(statusText(status))
    if (flags.wait && status.state !== 'settled') this.exit(1)
  }
}
