/** Rewrite the role map and hosts block of the nodes that exist, from the config server's state. */
import type {ConfigServerClient} from '../configserver/client.js'
import type {NodeRecord} from '../providers/provider.js'
import {setupNodes, type StepReport} from '../setup/runner.js'
import {connect} from '../ssh/ssh.js'
import type {Deployment} from './deployment.js'
import {setupVars} from '../plan/vars.js'

export function rewire(
  deployment: Deployment,
  server: ConfigServerClient,
  records: NodeRecord[],
  secrets: string[],
): Promise<StepReport[]> {
  return setupNodes({
    plan: deployment.result.plan,
    catalog: deployment.catalog,
    records,
    server,
    connect: (record) =>
      connect(deployment.sshTarget(record), {hostKeys: deployment.hostKeyPolicy, retryForMs: 30_000}),
    logFile: (node, step) => deployment.workspace.logFile(node, step),
    vars: setupVars(deployment.nodeset),
    setEtcHosts: deployment.nodeset.general.setEtcHosts,
    concurrency: 16,
    force: false,
    secrets,
    wiringOnly: true,
  })
}
