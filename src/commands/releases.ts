import {Args} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {openDeployment} from '../operations/deployment.js'
import {table} from '../plan/render.js'
import {connectDeployment} from '../operations/deploy-context.js'
import {releaseTime} from '../deploy/release.js'
import {withAppContext} from '../operations/deploy-run.js'
import {previousRelease, type NodeReleases} from '../deploy/scripts.js'
import {listReleases} from '../deploy/update.js'

export interface ReleaseRow {
  id: string
  createdAt?: string
  current: boolean
  previous: boolean
}

/** One appserver's releases, newest first, with which is current and which came before it. */
export function releaseRows(listing: NodeReleases): ReleaseRow[] {
  const previous = previousRelease(listing)
  return [...listing.releases].reverse().map((r) => ({
    id: r.id,
    createdAt: r.createdAt ?? releaseTime(r.id)?.toISOString(),
    current: r.id === listing.current,
    previous: r.id === previous,
  }))
}

export default class Releases extends NodesetCommand {
  static summary =
    "List an app's releases on each appserver: id, when it was made, which is current and which came before it."
  static examples = [
    '<%= config.bin %> releases hello examples/local.conf',
    '<%= config.bin %> releases blog foobar.conf --json',
  ]
  static args = {
    app: Args.string({description: 'The app name (as the locations name it).', required: true}),
    file: Args.string({description: 'The nodeset file.', required: true}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Releases)
    const deployment = openDeployment(args.file)
    this.secrets = [...deployment.nodeset.secrets]
    const opened = await connectDeployment(deployment, this.secrets)
    let listings: Map<string, NodeReleases>
    try {
      listings = await withAppContext(
        opened,
        {
          file: args.file,
          app: args.app,
          services: [],
          json: flags.json,
          secrets: this.secrets,
          lock: false,
          progress: false,
        },
        listReleases,
      )
    } finally {
      await opened.close()
    }
    const nodes = [...listings].map(([node, listing]) => ({
      node,
      current: listing.current ?? null,
      previous: previousRelease(listing) ?? null,
      running: listing.running,
      releases: releaseRows(listing),
    }))
    if (flags.json) return this.printJson({app: args.app, nodes})
    const rows = nodes.flatMap((n) =>
      n.releases.length === 0
        ? [[n.node, '-', '-', 'no releases']]
        : n.releases.map((r, i) => [
            i === 0 ? n.node : '',
            r.id,
            r.createdAt ?? '-',
            [r.current ? `current${n.running ? '' : ' (stopped)'}` : '', r.previous ? 'previous' : '']
              .filter(Boolean)
              .join(', '),
          ]),
    )
    this.print(table(['APPSERVER', 'RELEASE', 'CREATED', 'STATE'], rows))
  }
}
