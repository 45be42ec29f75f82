// A benchmark's figures for bench/results.json: bench/run.js names a file per benchmark in
// NODESET_BENCH_RESULT and gathers them after the run; run alone, a benchmark only prints.
import fs from 'node:fs'

/** Merge these figures (numbers, or objects of them) into this benchmark's result. */
export function record(figures) {
  const file = process.env.NODESET_BENCH_RESULT
  if (!file) return
  const before = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {}
  fs.writeFileSync(file, JSON.stringify({...before, ...figures}, null, 2) + '\n')
}

/** Round to `digits` decimals, for ratios and milliseconds. */
export const round = (value, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits
