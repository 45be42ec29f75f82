import * as Args from '@oclif/core/args'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, forceReleaseFlag, hookTimeoutFlag, rolloutFlags, deploymentFlags} from '../cli/flags.js'
import {deployTable} from '../cli/views.js'
import {failureSummary} from '../deploy/update.js'
import {appConfig, update} from '../operations/deploy.js'

export default class Update extends NodesetCommand {
  static summary = 'Deploy a new release of an app to its appservers, staged and reversible.'
  static description = `APP_DIR holds the app and its app.ini. The app goes to the appservers whose locations name its app_name. In order:   1. the services it needs are prepared (for mysql: a database and a user named after the app);   2. the release (a tar of APP_DIR, sha256 checked on arrival) is staged on every appserver, not active;   3. the first appserver is taken out of the balancer's rotation, switched, restarted and      health-checked; the app's update_fetch (its migration hook) runs there, once; it goes back in;   4. the other appservers follow, --batch-size at a time, each out of rotation while it switches. When any step fails, every appserver that switched goes back to the release it ran, the same way, and the command exits 1 saying what failed where. Old releases beyond keep_releases are deleted.

A bad app.ini is refused with file:line and a hint (exit code 2); nothing is changed.`
  static examples = [
    '<%= config.bin %> update examples/hello-app examples/local.conf',
    '<%= config.bin %> update blog/ foobar.conf --batch-size 3 --json',
  ]
  static args = {
    app_dir: Args.string({description: 'The app directory (with app.ini).', required: true}),
    file: fileArg,
  }
  static flags = {
    ...deploymentFlags,
    ...rolloutFlags,
    'hook-timeout': hookTimeoutFlag,
    force: forceReleaseFlag,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Update)
    const {file, rest} = this.nodesetFileAmong([args.app_dir, args.file], 1)
    const dep = this.openDeployment(file, flags)
    const appDir = rest[0]
    const options = {
      batchSize: flags['batch-size'],
      healthTimeoutSec: flags['health-timeout'],
      hookTimeoutSec: flags['hook-timeout'],
      force: flags.force,
    }
    const result = await update(dep, appDir, appConfig(dep, appDir), options)
    const error = result.ok ? undefined : failureSummary(result, 'update')
    if (flags.json) this.printJson({type: 'result', ...result, error})
    else if (result.unchanged)
      this.print(`${result.app}: ${result.release} is current everywhere with this content; nothing to do`)
    else this.print('\n' + deployTable(result))
    if (error && !flags.json) this.note('\n' + error)
    if (error) this.exit(1)
  }
}
