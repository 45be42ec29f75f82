/**
 * oclif's entry point, for bin/run.js. The build bundles oclif into nodeset's modules
 * (scripts/bundle.mjs): the CLI starts by reading a few files instead of oclif's ~70 and its
 * dependencies' ~50, and the commands share that one copy of oclif with this entry.
 */
export {execute} from '@oclif/core/execute'
