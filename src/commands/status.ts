import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, deploymentFlags} from '../cli/flags.js'
import {statusText} from '../cli/views.js'
import {status} from '../operations/status.js'
import {openStatusPage, parseListen} from '../web/index.js'

export default class Status extends NodesetCommand {
  static summary = "Show the deployment's state at the config server: every node, every service, what each waits for."
  static description = `Per node: its address as the config server saw it and its first and last phone-home. Per service: waiting (and on what), ready, running, succeeded, failed or timed out. The deployment is pending, settled (every service succeeded) or failed (a failure, or the start-up deadline passed).

With --wait, returns when the deployment settles (exit 0) or fails (exit 1).

With --web, serves a live picture of the deployment on this machine until Ctrl-C: the graph, one cluster per role, each vertex coloured and labelled by its state; click a node for its address, facts and setup log. It prints the URL to open, with a one-time token. It works before anything exists, while up or setup-node runs in another terminal, and for a refused file (its problems shown).`
  static examples = [
    '<%= config.bin %> status examples/local.conf',
    '<%= config.bin %> status foobar.conf --wait --json',
    '<%= config.bin %> status examples/local.conf --web',
    '<%= config.bin %> status examples/local.conf --web --listen 127.0.0.1:8765',
  ]
  static args = {file: fileArg}
  static flags = {
    ...deploymentFlags,
    wait: Flags.boolean({description: 'Wait until the deployment settles or fails.', default: false}),
    timeout: Flags.integer({description: 'With --wait: give up after this many seconds.', default: 3600}),
    web: Flags.boolean({description: 'Serve a live picture of the deployment in the browser, until Ctrl-C.'}),
    listen: Flags.string({
      description: 'With --web: the address and port to serve on (default 127.0.0.1:0, any free port).',
      dependsOn: ['web'],
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Status)
    if (flags.web) return this.serve(args.file, flags.listen ?? '127.0.0.1:0')
    const current = await status(this.openDeployment(args.file, flags), {
      waitSec: flags.wait ? flags.timeout : undefined,
    })
    if (flags.json) this.printJson(current)
    else this.print(statusText(current))
    if (flags.wait && current.state !== 'settled') this.exit(1)
  }

  private async serve(file: string, listen: string): Promise<void> {
    const page = await openStatusPage(file, {listen: parseListen(listen)})
    for (const problem of page.problems) this.note(problem.text)
    this.print(
      `status page of ${file}: ${page.url}\n(open it once: its token is exchanged for a cookie; Ctrl-C to stop)`,
    )
    await new Promise((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve))
    await page.close()
  }
}
