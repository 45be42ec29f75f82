#!/usr/bin/env node
// oclif's entry point, bundled with nodeset's commands (dist/cli/oclif.js, scripts/bundle.mjs).
import {execute} from '../dist/cli/oclif.js'

await execute({dir: import.meta.url})
