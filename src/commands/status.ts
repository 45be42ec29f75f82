import {Flags} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, deploymentFlags} from '../cli/flags.js'
import {statusText} from '../cli/views.js'
import {status} from '../operations/status.js'

export default class Status extends NodesetCommand {
  static summary = "Show the deployment's state at the config server: every node, every service, what each waits for."
  static description = `Per node: its address as the config server saw it and its first and last phone-home. Per service: waiting (and on what), ready, running, succeeded, failed or timed out. The deployment is pending, settled (every service succeeded) or failed (a failure, or the start-up deadline passed).

With --wait, returns when the deployment settles (exit 0) or fails (exit 1).`
  static examples = [
    '<%= config.bin %> status examples/local.conf',
    '<%= config.bin %> status foobar.conf --wait --json',
  ]
  static args = {file: fileArg}
  static flags = {
    ...deploymentFlags,
    wait: Flags.boolean({description: 'Wait until the deployment settles or fails.', default: false}),
    timeout: Flags.integer({description: 'With --wait: give up after this many seconds.', default: 3600}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Status)
    const current = await status(this.openDeployment(args.file, flags), {
      waitSec: flags.wait ? flags.timeout : undefined,
    })
    if (flags.json) this.printJson(current)
    else this.print(statusText(current))
    if (flags.wait && current.state !== 'settled') this.exit(1)
  }
}
