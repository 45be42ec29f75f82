#!/usr/bin/env node
// oclif's entry point by its own module, not the package's index: the index loads every part of
// oclif and all of semver (to check Node's version against oclif's engines) before any command runs.
import {execute} from '@oclif/core/execute'

await execute({dir: import.meta.url})
