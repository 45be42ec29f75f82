/**
 * The status page (status --web) in a real browser (Debian's chromium driven by playwright-core) over a
 * real deployment on local nodes: an app that waits for a database's password, and a service that fails
 * on purpose. The page is opened before anything exists and follows create-node and setup-node run by
 * other processes, without a reload; a node's details never show a secret; a refused file shows its
 * cycle; a request without the token is refused.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {type BrowserContext, chromium, type Page} from 'playwright-core'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {mustRunLocalNodes, ROOT, runCli} from '../helpers/cli.js'
import {localProviderProblem} from '../../src/providers/local-system.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-web-'))
const file = path.join(dir, 'web.conf')
const workspace = path.join(dir, '.nodeset', 'web-status')
const ARTIFACTS = path.join(ROOT, 'test-artifacts')
const [APP, DB, DOOMED] = ['app1.web.test/app', 'mysql.web.test/db', 'extra1.web.test/doomed']

fs.writeFileSync(
  file,
  `[general]
name = web-status
base_domain = web.test
boot_timeout = 90s
services_dir = ${path.join(ROOT, 'test/fixtures/web-status/services')}
[provider]
provider = local
subnet = 10.91.1.0/24
[appserver]
services = app
app.db_password = {{output "service:mysql" "db" "password"}}
[service:mysql]
services = db
[role:extra]
services = doomed
`,
)

/** `nodeset status FILE --web` in a child process, and the URL it prints. */
async function serve(nodesetFile: string): Promise<{child: ChildProcess; url: string; stop(): Promise<number | null>}> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/run.js'), 'status', nodesetFile, '--web'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL printed: ${output}`)), 30_000)
    const read = (chunk: Buffer) => {
      output += chunk.toString()
      const found = /http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]+/.exec(output)
      if (found) {
        clearTimeout(timer)
        resolve(found[0])
      }
    }
    child.stdout!.on('data', read)
    child.stderr!.on('data', read)
    child.once('exit', (code) => reject(new Error(`status --web exited (${code}): ${output}`)))
  })
  const stop = () =>
    new Promise<number | null>((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode)
      child.once('exit', (code) => resolve(code))
      child.kill('SIGINT')
    })
  return {child, url, stop}
}

const vertex = (page: Page, id: string) => page.locator(`#graph [data-id="${id}"]`)

async function stateBecomes(page: Page, id: string, state: string, timeout = 90_000): Promise<void> {
  await page.locator(`#graph [data-id="${id}"][data-state="${state}"]`).waitFor({timeout})
}

describe.runIf(await mustRunLocalNodes())('the status page in a browser', () => {
  let context: BrowserContext
  let page: Page
  let status: Awaited<ReturnType<typeof serve>>

  beforeAll(async () => {
    const problem = await localProviderProblem()
    if (problem) throw new Error(`cannot run: ${problem}`)
    status = await serve(file)
    context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-chromium-')), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      viewport: {width: 1400, height: 900},
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
    page = context.pages()[0] ?? (await context.newPage())
  })

  afterAll(async () => {
    await context?.close()
    await status?.stop()
    await runCli(['destroy-node', file, '--yes'])
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('shows every planned vertex as not created before anything exists, and creates nothing', async () => {
    await page.goto(status.url)
    // The token has left the address bar: it was exchanged for a cookie.
    expect(page.url()).not.toContain('token=')
    for (const id of [APP, DB, DOOMED])
      await expect(vertex(page, id).getAttribute('data-state')).resolves.toBe('not created')
    await expect(page.locator('#phase').textContent()).resolves.toContain('not created')
    await expect(page.locator('#legend').textContent()).resolves.toMatch(
      /not created.*waiting.*ready.*running.*succeeded.*failed.*timed out/,
    )
    expect(fs.existsSync(workspace)).toBe(false)
  })

  it('follows create-node and setup-node run in other processes, without a reload', async () => {
    await page.evaluate(() => Object.assign(window, {sameDocument: true}))
    const created = await runCli(['create-node', file])
    expect(created.code, created.stderr).toBe(0)
    // The app waits for the database's password; the label says so, not only the colour.
    await stateBecomes(page, APP, 'waiting', 30_000)
    await expect(vertex(page, APP).textContent()).resolves.toContain('waiting')
    await expect(vertex(page, APP).getAttribute('aria-label')).resolves.toContain('output password of mysql.web.test')

    const setup = spawn(process.execPath, [path.join(ROOT, 'bin/run.js'), 'setup-node', file], {
      cwd: ROOT,
      stdio: 'ignore',
    })
    const exited = new Promise<number | null>((resolve) => setup.once('exit', resolve))
    await stateBecomes(page, APP, 'succeeded')
    await stateBecomes(page, DB, 'succeeded')
    await stateBecomes(page, DOOMED, 'failed')
    expect(await exited).toBe(1)
    await expect(page.evaluate(() => (window as unknown as {sameDocument?: boolean}).sameDocument)).resolves.toBe(true)
    await expect(page.locator('#phase').textContent()).resolves.toContain('failed')
  }, 180_000)

  it("shows a node's address, facts, services and setup log, and never a secret", async () => {
    await vertex(page, APP).click()
    const details = page.locator('#details')
    await details.locator('h2', {hasText: 'app1.web.test'}).waitFor()
    await expect(details.textContent()).resolves.toMatch(/address10\.91\.1\.\d+/)
    await expect(details.locator('.facts').textContent()).resolves.toContain('app1')
    await expect(details.locator('tr[data-service="app"]').getAttribute('data-state')).resolves.toBe('succeeded')
    const log = await details.locator('details.log[data-step="app"] pre').textContent()
    expect(log).toContain('app configured on app1.web.test')
    expect(log).toContain('connecting to the database with ********')

    // By keyboard: focus the failing vertex, Enter opens its node.
    await vertex(page, DOOMED).focus()
    await page.keyboard.press('Enter')
    await details.locator('h2', {hasText: 'extra1.web.test'}).waitFor()
    const doomed = details.locator('tr[data-service="doomed"]')
    await expect(doomed.getAttribute('data-state')).resolves.toBe('failed')
    await expect(doomed.textContent()).resolves.toContain('the doomed service fails on purpose')
    await expect(vertex(page, DOOMED).textContent()).resolves.toContain('✖ failed')

    fs.mkdirSync(ARTIFACTS, {recursive: true})
    await page.screenshot({path: path.join(ARTIFACTS, 'status-page.png'), fullPage: true})

    const everything = await page.evaluate(async () => {
      const answers = await Promise.all(
        ['app1.web.test', 'mysql.web.test'].map((n) => fetch(`/api/nodes/${n}`).then((r) => r.text())),
      )
      return document.documentElement.outerHTML + answers.join('')
    })
    expect(everything).toContain('mysql.web.test')
    expect(everything).not.toContain('s3cr3t-db-pw')
  })

  it('refuses a request without the token, with a wrong one, and with the spent one', async () => {
    const base = status.url.replace(/\?token=.*/, '')
    for (const url of [base, `${base}events`, `${base}api/nodes/app1.web.test`, `${base}?token=wrong`, status.url]) {
      const response = await fetch(url, {redirect: 'manual'})
      expect(response.status, url.replace(/token=[\w-]+/, 'token=…')).toBe(401)
    }
  })

  it('draws a role of more than 5 nodes as one vertex, expanded and collapsed again by keyboard', async () => {
    const planned = await serve('examples/foobar.conf')
    try {
      const other = await context.newPage()
      await other.goto(planned.url)
      const group = other.locator('#graph [data-id="group:|appserver"]')
      await expect(group.textContent()).resolves.toContain('appserver × 10')
      await expect(group.textContent()).resolves.toContain('○ 10 not created')
      await expect(other.locator('#graph [data-kind="step"]').count()).resolves.toBe(2)
      await group.focus()
      await other.keyboard.press('Enter')
      await other.locator('#graph [data-id="app10.foobar.com/appserver"]').waitFor()
      await expect(other.locator('#graph [data-kind="step"]').count()).resolves.toBe(12)
      await other.getByRole('button', {name: 'Collapse appserver × 10'}).press('Enter')
      await group.waitFor()
      await other.close()
    } finally {
      expect(await planned.stop()).toBe(0)
    }
  })

  it('shows the cycle of a refused file in red, with its file:line', async () => {
    const refused = await serve('examples/deadlock.conf')
    try {
      const other = await context.newPage()
      await other.goto(refused.url)
      await other.locator('#graph [data-cycle="true"]').first().waitFor()
      await expect(other.locator('#graph [data-cycle="true"]').count()).resolves.toBe(2)
      await expect(other.locator('#problems').textContent()).resolves.toContain(
        'examples/deadlock.conf:13: deadlock: 2 services wait for each other in a cycle',
      )
      await expect(other.locator('#problems').textContent()).resolves.toContain('(examples/deadlock.conf:18)')
      await expect(other.locator('#graph [data-id="i1.example.test/consume"]').textContent()).resolves.toContain(
        'in a cycle',
      )
      await other.close()
    } finally {
      expect(await refused.stop()).toBe(0)
    }
  })
})
