// The status page of a 1,000-node plan, collapsed by role, in a real browser (Debian's chromium): time
// from navigation to the graph drawn, against the same page of a 10-node plan measured in the same run.
// Run: npm run build && node bench/web/run.js
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {performance} from 'node:perf_hooks'
import {chromium} from 'playwright-core'
import {openStatusPage} from '../../dist/web/index.js'
import {record, round} from '../results.js'

const RUNS = Number(process.env.RUNS ?? 5)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-bench-web-'))

function planFile(appservers) {
  const file = path.join(dir, `plan-${appservers}.conf`)
  fs.writeFileSync(
    file,
    `[general]\nname = bench${appservers}\nbase_domain = bench.test\n[provider]\nprovider = local\nsubnet = 10.250.0.0/16\n` +
      `[appserver]\nnodes = ${appservers}\n[service:mysql]\n[balancer]\n`,
  )
  return file
}

async function measure(context, file) {
  const page = await openStatusPage(file)
  const times = []
  try {
    for (let i = 0; i < RUNS + 1; i++) {
      // A fresh URL each time: the token works once. The first load warms the browser's caches.
      const fresh = i === 0 ? page : await openStatusPage(file)
      const tab = await context.newPage()
      const start = performance.now()
      await tab.goto(fresh.url)
      await tab.locator('#graph[data-renders] svg').waitFor({timeout: 60_000})
      if (i > 0) times.push(performance.now() - start)
      await tab.close()
      if (fresh !== page) await fresh.close()
    }
  } finally {
    await page.close()
  }
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)]
}

const context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(dir, 'chromium-')), {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
})
try {
  const baseline = await measure(context, planFile(8))
  const big = await measure(context, planFile(998))
  console.log(`status page, collapsed, median of ${RUNS} loads (navigation to graph drawn):`)
  console.log(`  10-node plan (baseline): ${baseline.toFixed(0)} ms`)
  console.log(`  1,000-node plan:         ${big.toFixed(0)} ms  (${(big / baseline).toFixed(2)}× the baseline)`)
  record({baselineMs: round(baseline, 0), thousandNodesMs: round(big, 0), ratio: round(big / baseline)})
} finally {
  await context.close()
  fs.rmSync(dir, {recursive: true, force: true})
}
