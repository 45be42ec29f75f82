/**
 * update, rollback and releases against real nodes of the local provider: two appservers behind an
 * nginx balancer, and a MariaDB node. While each update runs, clients loop requests through the
 * balancer and none may fail. Needs root, iproute2, openssh-server, nginx and mariadb-server; with
 * CI=true a missing one fails the run instead of skipping it. Runs the built CLI (npm run build).
 */
import {execFile as execFileCb} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'
import {type CliResult, runCli} from '../helpers/cli.js'
import {httpGet} from '../helpers/http.js'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {localProviderProblem} from '../../src/providers/local-system.js'

const execFile = promisify(execFileCb)
const problem = await localProviderProblem()
const mustRun = process.env.CI === 'true' || problem === undefined

const root = path.resolve(__dirname, '../..')
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-deploy-'))
const conf = path.join(work, 'deploy.conf')
const workspace = path.join(work, '.nodeset', 'dt-deploy')
const APP1 = 'app1.deploy.test'
const APP2 = 'app2.deploy.test'

const CONF = `[general]
name = dt-deploy
base_domain = deploy.test
boot_timeout = 2m

[provider]
provider = local
subnet = 10.79.1.0/24

[appserver]
locations =
  http://hello.deploy.test/ hello
nodes = 2

[service:mysql]

[balancer]
hostnames = hello.deploy.test
`

type Run = CliResult

/** The CLI, run from the test's folder as a user would. */
function nodeset(...args: string[]): Promise<Run> {
  return runCli(args, {cwd: work, timeoutMs: 240_000})
}

const addresses = new Map<string, string>()

/** A command on a node over SSH, its host key checked against the one nodeset pinned. */
async function onNode(node: string, command: string): Promise<string> {
  const args = [
    '-F',
    '/dev/null',
    '-i',
    path.join(workspace, 'id_ed25519'),
    '-o',
    `UserKnownHostsFile=${path.join(workspace, 'known_hosts')}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
  ]
  args.push(
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    `HostKeyAlias=${node}`,
    `root@${addresses.get(node)}`,
    command,
  )
  return (await execFile('ssh', args, {timeout: 30_000})).stdout
}

interface Answer {
  node: string
  release: string
  version: string
  database: {name: string; host: string; reachable: boolean} | null
}

const get = (url: string) => httpGet(url)

async function answer(url: string): Promise<Answer> {
  const {status, body} = await get(url)
  expect(status).toBe(200)
  return JSON.parse(body) as Answer
}

/**
 * Clients looping requests through the balancer (a new connection each) until stopped. Before the
 * app's first release nothing can answer; failures count from the first answer on, after
 * `graceMs`: when the first appserver joins an empty rotation, nginx's previous workers (whose
 * rotation has nothing in it) still take connections for a moment, until they are told to stop.
 */
function traffic(url: string, graceMs: number, clients = 2) {
  let running = true
  let firstAnswer: number | undefined
  const counts = {ok: 0, failures: [] as Array<{at: number; what: string}>, unanswered: 0}
  const loop = async () => {
    while (running) {
      let failure: string | undefined
      try {
        const {status, body} = await get(url)
        if (status !== 200) failure = `HTTP ${status}: ${body.slice(0, 80)}`
      } catch (error) {
        failure = (error as Error).message
      }
      if (!failure) {
        firstAnswer ??= Date.now()
        counts.ok++
      } else if (firstAnswer !== undefined) counts.failures.push({at: Date.now(), what: failure})
      else counts.unanswered++
    }
  }
  const loops = Array.from({length: clients}, loop)
  return async () => {
    running = false
    await Promise.all(loops)
    const failed = counts.failures.filter((f) => f.at > firstAnswer! + graceMs).map((f) => f.what)
    return {requests: counts.ok + counts.failures.length, failed, unanswered: counts.unanswered}
  }
}

/** An update (or rollback) with traffic through the balancer all along. */
async function underTraffic(
  args: string[],
  graceMs = 0,
): Promise<Run & {requests: number; failed: string[]; beforeFirstAnswer: number}> {
  const stop = traffic(balancerUrl, graceMs)
  const run = await nodeset(...args)
  const counts = await stop()
  return {...run, requests: counts.requests, failed: counts.failed, beforeFirstAnswer: counts.unanswered}
}

function appVersion(name: string, version: string, extra: Record<string, string> = {}): string {
  const dir = path.join(work, name)
  fs.cpSync(path.join(root, 'examples/hello-app'), dir, {recursive: true})
  fs.writeFileSync(path.join(dir, 'VERSION'), `${version}\n`)
  for (const [file, text] of Object.entries(extra)) fs.writeFileSync(path.join(dir, file), text)
  return dir
}

/** What every appserver serves: through the balancer (both must answer) and directly. */
async function served(): Promise<{versions: Set<string>; nodes: Set<string>; releases: Set<string>}> {
  const answers: Answer[] = []
  for (let i = 0; i < 12; i++) answers.push(await answer(balancerUrl))
  for (const node of [APP1, APP2]) answers.push(await answer(`http://${addresses.get(node)}:8080/`))
  return {
    versions: new Set(answers.map((a) => a.version)),
    nodes: new Set(answers.map((a) => a.node)),
    releases: new Set(answers.map((a) => a.release)),
  }
}

async function releases(): Promise<
  Array<{
    node: string
    current: string | null
    previous: string | null
    running: boolean
    releases: Array<{id: string; current: boolean}>
  }>
> {
  const run = await nodeset('releases', 'hello', conf, '--json')
  expect(run.stderr).toBe('')
  expect(run.code).toBe(0)
  return JSON.parse(run.stdout).nodes
}

/** Lines of the hello app's migration log on each appserver. */
async function migrations(): Promise<string[]> {
  const lines: string[] = []
  for (const node of [APP1, APP2])
    lines.push(
      ...(await onNode(node, 'cat /srv/nodeset/apps/hello/data/migrations.log 2>/dev/null || true'))
        .split('\n')
        .filter(Boolean),
    )
  return lines
}

let balancerUrl = ''
let v1 = ''
let databasePassword = ''

describe.runIf(mustRun)('deploying an app to real nodes', () => {
  beforeAll(async () => {
    if (problem) throw new Error(problem)
    fs.writeFileSync(conf, CONF)
    const up = await nodeset('up', conf)
    expect(up.stderr).toBe('')
    expect(up.code).toBe(0)
    expect(up.stdout).toMatch(/dt-deploy is up: http:\/\/10\.79\.1\.\d+:80\//)
    balancerUrl = /is up: (\S+)/.exec(up.stdout)![1]
    const listed = JSON.parse((await nodeset('list-nodes', conf, '--json')).stdout) as {
      nodes: Array<{name: string; address: string}>
    }
    for (const n of listed.nodes) addresses.set(n.name, n.address)
  }, 240_000)

  afterAll(async () => {
    if (fs.existsSync(conf)) await nodeset('destroy-node', conf, '--yes')
    fs.rmSync(work, {recursive: true, force: true})
  }, 120_000)

  it('refuses a bad app.ini with its file:line and a hint, exit code 2, before touching a node', async () => {
    const dir = appVersion('bad', 'v0', {
      'app.ini': '[production]\napp_name = hello\ncomand = node server.js\nservice.postgres =\n',
    })
    const run = await nodeset('update', dir, conf)
    expect(run.code).toBe(2)
    // Paths are shown relative to the working directory.
    expect(run.stderr).toContain('bad/app.ini:3: unknown key "comand"\n  hint: did you mean "command"?')
    expect(run.stderr).toContain('bad/app.ini:1: command is missing')
    expect(run.stderr).toContain('nothing was changed')
    expect(await onNode(APP1, 'ls /srv/nodeset/apps')).toBe('')
  })

  it('deploys v1: both appservers serve it through the balancer, with a database of its own, and once it answers no request fails', async () => {
    const run = await underTraffic(['update', appVersion('v1', 'v1'), conf], 1000)
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    // Nothing answered before the first appserver ran v1 (502); from then on, every request did.
    expect(run.beforeFirstAnswer).toBeGreaterThan(0)
    expect(run.failed).toEqual([])
    expect(run.requests).toBeGreaterThan(0)

    const listed = await releases()
    v1 = listed[0].current!
    expect(listed.map((n) => [n.node, n.current, n.running])).toEqual([
      [APP1, v1, true],
      [APP2, v1, true],
    ])
    const now = await served()
    expect(now.versions).toEqual(new Set(['v1']))
    expect(now.nodes).toEqual(new Set([APP1, APP2]))
    expect(now.releases).toEqual(new Set([v1]))
    expect((await answer(balancerUrl)).database).toEqual({name: 'hello', host: 'mysql.deploy.test', reachable: true})

    // The migration hook ran once, on the first appserver.
    expect((await migrations()).map((l) => l.split(' ').slice(1).join(' '))).toEqual([`${v1} ${APP1}`])

    // The app's database user works from an appserver, with the settings the app got; its
    // password is in the app's env file (0600) and was never printed.
    const env = await onNode(APP2, 'stat -c %a /srv/nodeset/apps/hello/env; cat /srv/nodeset/apps/hello/env')
    expect(env.split('\n')[0]).toBe('600')
    const password = /^CONFIG_MYSQL_PASSWORD='([A-Za-z0-9]+)'$/m.exec(env)![1]
    databasePassword = password
    expect(run.stdout + run.stderr).not.toContain(password)
    const sql = await onNode(
      APP2,
      `set -a; . /srv/nodeset/apps/hello/env; MYSQL_PWD="$CONFIG_MYSQL_PASSWORD" mariadb -h "$CONFIG_MYSQL_HOST" -P "$CONFIG_MYSQL_PORT" -u "$CONFIG_MYSQL_USER" "$CONFIG_MYSQL_DBNAME" -N -e 'CREATE TABLE IF NOT EXISTS t (n INT); SELECT DATABASE(), CURRENT_USER()'`,
    )
    expect(sql.trim()).toBe('hello\thello@%')
    // The app runs unprivileged, and cannot change its own code.
    expect((await onNode(APP1, 'ps -o user= -p "$(cat /var/lib/nodeset/apps/hello.pid)"')).trim()).toBe('nobody')
    expect((await onNode(APP1, `stat -c '%U %a' /srv/nodeset/apps/hello/current/server.js`)).trim()).toBe('root 644')
  })

  it('a v2 whose migration fails: exit 1 saying what failed where, and v1 still serves everywhere', async () => {
    const run = await underTraffic(['update', appVersion('v2-broken', 'v2', {FAIL_MIGRATION: ''}), conf])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(
      new RegExp(
        `update of hello to \\S+ failed at hook on ${APP1.replace(/\./g, '\\.')}: update_fetch hook failed on node ${APP1.replace(/\./g, '\\.')}`,
      ),
    )
    expect(run.stderr).toContain('failed on purpose (FAIL_MIGRATION)')
    expect(run.stderr).toContain(`  ${APP1}: reverted, runs ${v1}\n  ${APP2}: not switched, runs ${v1}`)
    expect(run.beforeFirstAnswer).toBe(0)
    expect(run.failed).toEqual([])
    expect(run.requests).toBeGreaterThan(0)

    const now = await served()
    expect(now.versions).toEqual(new Set(['v1']))
    expect(now.nodes).toEqual(new Set([APP1, APP2]))
    expect((await releases()).map((n) => n.current)).toEqual([v1, v1])
    expect(await migrations()).toHaveLength(1)
    const balancer = [...addresses.keys()].find((n) => n.startsWith('balancer'))!
    expect(await onNode(balancer, 'cat /etc/nodeset/nginx/drained')).toBe('')
  })

  it('a v3 that does not start: the switch fails on the first appserver, which goes back to v1; --json says so', async () => {
    const broken = appVersion('v3-broken', 'v3')
    fs.writeFileSync(
      path.join(broken, 'app.ini'),
      fs
        .readFileSync(path.join(broken, 'app.ini'), 'utf8')
        .replace('command = node server.js', 'command = node missing.js'),
    )
    const run = await underTraffic(['update', broken, conf, '--json'])
    expect(run.code).toBe(1)
    expect(run.beforeFirstAnswer).toBe(0)
    expect(run.failed).toEqual([])
    const result = JSON.parse(run.stdout.slice(run.stdout.lastIndexOf('\n{\n') + 1))
    expect(result).toMatchObject({type: 'result', app: 'hello', ok: false, failure: {node: APP1, step: 'switch'}})
    expect(result.failure.message).toMatch(
      /switch to \S+ failed on node app1\.deploy\.test .*exit code 1:\nnodeset-app: hello exited before it listened on port 8080; the end of \/var\/log\/nodeset\/apps\/hello\.log:\n.*Cannot find module .*missing\.js/s,
    )
    expect(
      result.nodes.map((n: {node: string; outcome: string; release: string; inRotation: boolean}) => [
        n.node,
        n.outcome,
        n.release,
        n.inRotation,
      ]),
    ).toEqual([
      [APP1, 'reverted', v1, true],
      [APP2, 'not switched', v1, true],
    ])
    expect(run.stdout + run.stderr).not.toContain(databasePassword)
    expect((await served()).versions).toEqual(new Set(['v1']))
  })

  let v2 = ''
  it('a good v2: its migration runs exactly once, on the first appserver, and every appserver serves v2', async () => {
    const before = (await releases())[0].releases.map((r) => r.id).sort()
    expect(before).toHaveLength(3)
    const good = appVersion('v2', 'v2')
    fs.appendFileSync(path.join(good, 'app.ini'), 'keep_releases = 2\n')
    fs.writeFileSync(
      path.join(good, 'app.ini'),
      fs.readFileSync(path.join(good, 'app.ini'), 'utf8').replace('keep_releases = 5\n', ''),
    )
    const run = await underTraffic(['update', good, conf, '--batch-size', '2'])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.beforeFirstAnswer).toBe(0)
    expect(run.failed).toEqual([])
    expect(run.requests).toBeGreaterThan(0)

    const listed = await releases()
    v2 = listed[0].current!
    expect(v2).not.toBe(v1)
    expect(listed.map((n) => [n.current, n.previous])).toEqual([
      [v2, v1],
      [v2, v1],
    ])
    expect((await served()).versions).toEqual(new Set(['v2']))
    const runs = await migrations()
    expect(runs.filter((l) => l.includes(v2)).map((l) => l.split(' ')[2])).toEqual([APP1])
    expect(runs).toHaveLength(2)
    // keep_releases = 2: the newest two stay, and v1 as the one before current; the oldest failed one goes.
    for (const node of listed) expect(node.releases.map((r) => r.id).sort()).toEqual([v1, before[2], v2].sort())
  })

  it('rollback takes every appserver back to v1 the same staged way, without the hook, and no request fails', async () => {
    const run = await underTraffic(['rollback', 'hello', conf])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.beforeFirstAnswer).toBe(0)
    expect(run.failed).toEqual([])
    expect(run.requests).toBeGreaterThan(0)

    expect((await served()).versions).toEqual(new Set(['v1']))
    const listed = await releases()
    expect(listed.map((n) => [n.current, n.releases.map((r) => r.id)])).toEqual([
      [v1, expect.arrayContaining([v2, v1])],
      [v1, expect.arrayContaining([v2, v1])],
    ])
    expect(await migrations()).toHaveLength(2)

    const text = await nodeset('releases', 'hello', conf)
    expect(text.stdout).toMatch(new RegExp(`^${APP1.replace(/\./g, '\\.')}\\s+${v2}\\s+\\S+\\s*$`, 'm'))
    expect(text.stdout).toMatch(new RegExp(`^\\s+${v1}\\s+\\S+\\s+current$`, 'm'))
  })
  it('with nothing changed, update and up change nothing and say so; update --force makes a new release', async () => {
    const same = appVersion('v1-again', 'v1')
    const before = await releases()
    const run = await nodeset('update', same, conf)
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain(`hello: ${v1} is current everywhere with this content; nothing to do`)
    const up = await nodeset('up', conf, same)
    expect(up.code, up.stderr).toBe(0)
    expect(up.stdout).toMatch(/^nothing changed: dt-deploy is up as the file says/m)
    expect((await releases()).map((n) => n.releases.length)).toEqual(before.map((n) => n.releases.length))
    const forced = await nodeset('update', conf, same, '--force')
    expect(forced.code, forced.stderr).toBe(0)
    const after = await releases()
    expect(after[0].current).not.toBe(v1)
    expect((await served()).versions).toEqual(new Set(['v1']))
  }, 240_000)
})
