import {Args, Flags} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {openDeployment} from '../operations/deployment.js'
import {readAppConfig} from '../deploy/appini.js'
import {connectDeployment} from '../operations/deploy-context.js'
import {deployOutcomes, deployTable, withAppContext} from '../operations/deploy-run.js'
import {nodesetOffer} from '../deploy/targets.js'
import {failureSummary, updateApp} from '../deploy/update.js'

export const rolloutFlags = {
  'batch-size': Flags.integer({description: 'Appservers switched at once after the first one.', default: 1, min: 1}),
  'health-timeout': Flags.integer({
    description: "Seconds an appserver has to answer 2xx on the app's health_check once restarted.",
    default: 30,
    min: 1,
  }),
}

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
    file: Args.string({description: 'The nodeset file.', required: true}),
  }
  static flags = {
    ...rolloutFlags,
    'hook-timeout': Flags.integer({description: "Seconds the app's update_fetch may run.", default: 600, min: 1}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Update)
    const deployment = openDeployment(args.file)
    this.secrets = [...deployment.nodeset.secrets]
    const config = readAppConfig(args.app_dir, nodesetOffer(deployment.nodeset, deployment.result.plan))
    const opened = await connectDeployment(deployment, this.secrets)
    try {
      const result = await withAppContext(
        opened,
        {
          file: args.file,
          app: config.appName,
          services: config.services,
          json: flags.json,
          secrets: this.secrets,
          lock: true,
        },
        (ctx) =>
          updateApp(ctx, args.app_dir, config, {
            batchSize: flags['batch-size'],
            healthTimeoutSec: flags['health-timeout'],
            hookTimeoutSec: flags['hook-timeout'],
          }),
        deployOutcomes,
      )
      if (flags.json)
        this.printJson({type: 'result', ...result, error: result.ok ? undefined : failureSummary(result, 'update')})
      else this.print('\n' + deployTable(result))
      if (!result.ok) {
        if (!flags.json) this.note('\n' + failureSummary(result, 'update'))
        this.exit(1)
      }
    } finally {
      await opened.close()
    }
  }
}
