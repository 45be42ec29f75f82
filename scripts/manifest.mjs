// Writes what start-up reads instead of doing it again on every run, after a build (before
// scripts/bundle.mjs bundles the commands: oclif reads them here as tsc wrote them):
// - oclif.manifest.json: oclif lists commands and their flags (help, completion, did-you-mean) from
//   this file instead of importing every command's module;
// - dist/template-asts.json: nodeset's own templates (templates/**/*.hbs) with the AST handlebars
//   parses of each, which checking a plan reads instead of loading handlebars' parser
//   (src/operations/load.ts). Only those the plain-template scanner does not read itself.
import {readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {Plugin} from '@oclif/core'
import Handlebars from 'handlebars'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const plugin = new Plugin({root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true})
await plugin.load()
writeFileSync(join(root, 'oclif.manifest.json'), JSON.stringify(plugin.manifest, null, 2) + '\n')

const {scanPlain} = await import('../dist/plan/template-scan.js')
const templates = []
for (const entry of readdirSync(join(root, 'templates'), {recursive: true, withFileTypes: true})) {
  if (!entry.isFile() || !entry.name.endsWith('.hbs')) continue
  const text = readFileSync(join(entry.parentPath ?? entry.path, entry.name), 'utf8')
  if (!text.includes('{{') || scanPlain(text)) continue
  let ast
  try {
    ast = Handlebars.parse(text)
  } catch {
    continue // refused: its error is handlebars' own, when it is checked
  }
  templates.push([text, ast])
}
templates.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
const {version} = createRequire(import.meta.url)('handlebars/package.json')
writeFileSync(join(root, 'dist/template-asts.json'), JSON.stringify({handlebars: version, templates}) + '\n')
