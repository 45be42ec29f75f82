#!/usr/bin/env node
// Builds the Debian image that systemd-mode local nodes boot (`[provider] boot = systemd`), unless
// this machine has it cached (/var/cache/nodeset/images/<hash>/). Needs root, debootstrap and
// systemd-container, and the built CLI (npm run build). scripts/install.sh runs it.
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const {ensureImage} = await import(path.join(root, 'dist/providers/local-image-build.js'))
try {
  const image = await ensureImage((line) => console.log(line))
  console.log(`local boot image: ${image.root}`)
} catch (error) {
  console.error(`local boot image: ${error.message}`)
  process.exit(1)
}
