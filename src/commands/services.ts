import * as Flags from '@oclif/core/flags'
import path from 'node:path'
import {NodesetCommand} from '../cli/base.js'
import {servicesText} from '../cli/views.js'
import {loadCatalog} from '../services/catalog.js'

export default class Services extends NodesetCommand {
  static summary = 'List the services a role can run, with their metadata.'
  static description = `Each service is a directory with service.json (description, params, provides, after) and setup.sh.hbs. The metadata is read without running anything. nodeset's own services come first; --dir adds a directory of your own (a nodeset file uses [general] services_dir, or a services/ folder beside it).`
  static examples = ['<%= config.bin %> services', '<%= config.bin %> services --dir ./services --json']
  static flags = {
    dir: Flags.string({description: 'Another services directory.', multiple: true}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Services)
    const {catalog, problems} = loadCatalog((flags.dir ?? []).map((d) => path.resolve(d)))
    const services = [...catalog.values()].map((s) => ({
      name: s.name,
      description: s.description,
      builtin: s.builtin,
      dir: s.dir,
      params: s.params,
      provides: s.provides,
      after: s.after,
      roles: s.roles,
    }))
    if (flags.json) return this.printJson({services, problems})
    this.print(servicesText(services))
    for (const p of problems) this.note(`warning: ${p.message}`)
  }
}
