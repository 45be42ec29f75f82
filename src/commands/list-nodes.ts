import {Args} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {openConfigServer} from '../operations/connect.js'
import {openDeployment} from '../operations/deployment.js'
import {reconcile} from '../operations/nodes.js'
import {table} from '../plan/render.js'

export default class ListNodes extends NodesetCommand {
  static summary = 'List the nodes of a deployment as the provider sees them, with their last phone-home.'
  static description = `The provider (the cloud, by its tags) is the truth about which nodes exist; this shows them beside the plan: planned nodes that are missing, and nodes the file no longer has.`
  static examples = [
    '<%= config.bin %> list-nodes examples/local.conf',
    '<%= config.bin %> list-nodes foobar.conf --json',
  ]
  static args = {file: Args.string({description: 'The nodeset file.', required: true})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ListNodes)
    const deployment = openDeployment(args.file)
    this.secrets = deployment.nodeset.secrets
    const {plan} = deployment.result
    const records = await deployment.provider.list(plan.deployment)
    const rec = reconcile(plan, records)
    let contacts = new Map<string, string | undefined>()
    if (records.length > 0) {
      const {operatorAddress} = await deployment.prepare()
      const server = await openConfigServer(deployment.nodeset, deployment.workspace, operatorAddress)
      try {
        contacts = new Map((await server.client.status()).instances.map((i) => [i.id, i.lastContact]))
      } catch {
        // A deployment never registered has no contacts yet.
      } finally {
        await server.close()
      }
    }
    const rows = [
      ...plan.nodes.map((n) => {
        const r = records.find((x) => x.name === n.name && x.state !== 'terminated')
        return {
          name: n.name,
          role: n.role,
          id: r?.id ?? null,
          address: r?.address ?? null,
          state: r?.state ?? 'missing',
          lastPhoneHome: contacts.get(n.name) ?? null,
          planned: true,
        }
      }),
      ...rec.extras.map((r) => ({
        name: r.name,
        role: r.role,
        id: r.id,
        address: r.address ?? null,
        state: r.state,
        lastPhoneHome: contacts.get(r.name) ?? null,
        planned: false,
      })),
    ]
    if (flags.json) return this.printJson({deployment: plan.deployment, nodes: rows})
    this.print(
      table(
        ['NODE', 'ROLE', 'ID', 'ADDRESS', 'STATE', 'LAST PHONE-HOME'],
        rows.map((r) => [
          r.name + (r.planned ? '' : ' (not in file)'),
          r.role,
          r.id ?? '-',
          r.address ?? '-',
          r.state,
          r.lastPhoneHome ?? '-',
        ]),
      ),
    )
  }
}
