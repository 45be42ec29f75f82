/** The page's files, built by scripts/build-web.mjs into dist/page/ and served from the package. */
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const ASSET_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'page')

const TYPES = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
} as const

const cache = new Map<string, Buffer>()

export function readAsset(name: keyof typeof TYPES): {body: Buffer; type: string} | undefined {
  let body = cache.get(name)
  if (!body) {
    try {
      body = fs.readFileSync(path.join(ASSET_DIR, name))
    } catch {
      return undefined
    }
    cache.set(name, body)
  }
  return {body, type: TYPES[name]}
}
