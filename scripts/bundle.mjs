// After a build, each command (dist/commands/*.js) and the hook become one module with what it
// imports from dist/, and what several share goes into dist/chunks/: start-up then reads a few files
// instead of one module per source file (a `plan` loads ~50 otherwise). Dependencies stay outside
// (node_modules), but for oclif: its core and its dependencies (~120 small CommonJS files) are
// bundled too, with bin/run.js's entry (cli/oclif), so that every command and the entry share one
// copy of it. Imports made on demand (`await import(…)`) stay on demand, as chunks of their own.
// Every output sits two levels under the package, as the modules it replaces did, so the paths they
// compute from import.meta.url (../../templates/, ../page, ../template-asts.json) name the same files.
// tsc's modules stay in dist/ beside them (tests start the config server from dist/configserver/).
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = path.join(root, 'dist')
const entries = [
  ...fs
    .readdirSync(path.join(dist, 'commands'))
    .filter((f) => f.endsWith('.js'))
    .map((f) => `commands/${f.slice(0, -3)}`),
  'hooks/completion',
  'cli/oclif',
]
const pjson = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
// oclif's plugins stay outside: they are found by package name, and load their own oclif when run.
const external = Object.keys(pjson.dependencies).filter((name) => name !== '@oclif/core')
// oclif asks for typescript only to run a plugin's TypeScript sources, never nodeset's built ones.
external.push('typescript')
fs.rmSync(path.join(dist, 'chunks'), {recursive: true, force: true})
await build({
  entryPoints: entries.map((entry) => ({in: path.join(dist, `${entry}.js`), out: entry})),
  outdir: dist,
  chunkNames: 'chunks/[name]-[hash]',
  allowOverwrite: true,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // Bundled CommonJS calls require() for Node's modules and the packages left outside.
  banner: {
    js: "import {createRequire as nodesetCreateRequire} from 'node:module'; const require = nodesetCreateRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  logLevel: 'warning',
})
