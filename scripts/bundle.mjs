// After a build, each command (dist/commands/*.js) and the hook become one module with what it
// imports from dist/, and what several share goes into dist/chunks/: start-up then reads a few files
// instead of one module per source file (a `plan` loads ~50 otherwise). Dependencies stay outside
// (node_modules). Imports made on demand (`await import(…)`) stay on demand, as chunks of their own.
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
]
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
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
})
