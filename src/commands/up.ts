import {Args, Flags} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {UserError} from '../core/errors.js'
import {openDeployment} from '../operations/deployment.js'
import {readAppConfig} from '../deploy/appini.js'
import {connectDeployment} from '../operations/deploy-context.js'
import {deployOutcomes, deployTable, withAppContext} from '../operations/deploy-run.js'
import {appLocation, nodesetOffer} from '../deploy/targets.js'
import {createPhase, entryUrls, setupPhase} from '../operations/up.js'
import {failureSummary, updateApp, type DeployResult} from '../deploy/update.js'
import {rolloutFlags} from './update.js'

export default class Up extends NodesetCommand {
  static summary = 'Create the nodes, set them up and deploy the apps: create-node, setup-node and update in one go.'
  static description = `Runs what create-node, setup-node and update do, in that order, and stops at the first phase that fails. Every phase is idempotent: run it again after fixing the cause and finished work is skipped. Every APP_DIR's app.ini is checked before anything is created. Ends with the URL to open: the balancer's, or each appserver's without one.`
  static examples = [
    '<%= config.bin %> up examples/local.conf examples/hello-app',
    '<%= config.bin %> up foobar.conf blog/ shop/ --json',
  ]
  static strict = false
  static args = {
    file: Args.string({description: 'The nodeset file.', required: true}),
    app_dir: Args.string({description: 'App directories to deploy (each with app.ini); any number.'}),
  }
  static flags = {
    ...rolloutFlags,
    'hook-timeout': Flags.integer({description: "Seconds an app's update_fetch may run.", default: 600, min: 1}),
  }

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(Up)
    const appDirs = (argv as string[]).slice(1)
    const deployment = openDeployment(args.file)
    this.secrets = [...deployment.nodeset.secrets]
    const offer = nodesetOffer(deployment.nodeset, deployment.result.plan)
    const apps = appDirs.map((dir) => ({dir, config: readAppConfig(dir, offer)}))
    const names = apps.map((a) => a.config.appName)
    const twice = names.find((n, i) => names.indexOf(n) !== i)
    if (twice) throw new UserError(`two of the app directories are app ${twice}: give each app once`, 2)

    const opened = await connectDeployment(deployment, this.secrets)
    const results: DeployResult[] = []
    try {
      if (!flags.json) this.print('== create-node')
      await createPhase(opened, {json: flags.json, secrets: this.secrets})
      if (!flags.json) this.print('== setup-node')
      await setupPhase(opened, {json: flags.json, secrets: this.secrets})
      for (const {dir, config} of apps) {
        if (!flags.json) this.print(`== update ${config.appName} (${dir})`)
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
            updateApp(ctx, dir, config, {
              batchSize: flags['batch-size'],
              healthTimeoutSec: flags['health-timeout'],
              hookTimeoutSec: flags['hook-timeout'],
            }),
          deployOutcomes,
        )
        results.push(result)
        if (!flags.json) this.print('\n' + deployTable(result))
        if (!result.ok) throw new UserError(failureSummary(result, 'update'))
      }
      const ports = names
        .map((n) => appLocation(deployment.nodeset, n)?.port)
        .filter((p): p is number => p !== undefined)
      const urls = entryUrls(await opened.server.client.state(), ports)
      if (flags.json) this.printJson({type: 'result', ok: true, apps: results, urls})
      else
        this.print(`\n${deployment.result.plan.deployment} is up: ${urls.join(' ') || '(no balancer or app to open)'}`)
    } finally {
      await opened.close()
    }
  }
}
