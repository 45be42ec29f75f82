// Builds the status page (web/) into dist/page/: the TypeScript bundled by esbuild with @viz-js/viz
// (its WebAssembly inlined), the HTML and the style sheet copied. Served from the package: no CDN.
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const out = process.env.WEB_OUT_DIR ?? path.join(root, 'dist', 'page')
fs.mkdirSync(out, {recursive: true})
await build({
  entryPoints: [path.join(root, 'web', 'main.ts')],
  outfile: path.join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: false,
  legalComments: 'linked',
  tsconfig: path.join(root, 'web', 'tsconfig.json'),
  logLevel: 'warning',
})
for (const [from, to] of [
  ['index.html', 'index.html'],
  ['style.css', 'app.css'],
])
  fs.copyFileSync(path.join(root, 'web', from), path.join(out, to))
