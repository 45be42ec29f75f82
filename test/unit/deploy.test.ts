import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {loadPlan} from '../../src/operations/load.js'
import type {DeploymentState} from '../../src/configserver/protocol.js'
import {packRelease, releaseId, releaseTime, RELEASE_ID_PATTERN} from '../../src/deploy/release.js'
import {activationSteps, revertSteps, rolloutBatches} from '../../src/deploy/rollout.js'
import {
  balancerCommand,
  baseEnv,
  deactivateScript,
  healthScript,
  listScript,
  pruneScript,
  SUPERVISOR_PROTOCOL,
  envFile,
  historyUpdate,
  hookScript,
  mysqlPrepareScript,
  parseListing,
  previousRelease,
  releasesToPrune,
  stageScript,
  switchScript,
} from '../../src/deploy/scripts.js'
import {generatePassword} from '../../src/deploy/services.js'
import {resolveTargets} from '../../src/deploy/targets.js'
import {entryUrls} from '../../src/operations/up.js'
import {failureSummary, rollbackTarget} from '../../src/deploy/update.js'
import {releaseRows} from '../../src/operations/deploy.js'
import type {NodeRecord} from '../../src/providers/provider.js'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-deploy-unit-'))
afterAll(() => fs.rmSync(work, {recursive: true, force: true}))

const R1 = '20250101T000000Z-11111111'
const R2 = '20250102T000000Z-22222222'
const R3 = '20250103T000000Z-33333333'
const R4 = '20250104T000000Z-44444444'

describe('the order of a rollout, as data', () => {
  it('activates the first node alone, then the rest in batches', () => {
    expect(rolloutBatches(['a1', 'a2', 'a3', 'a4', 'a5'], 1)).toEqual([['a1'], ['a2'], ['a3'], ['a4'], ['a5']])
    expect(rolloutBatches(['a1', 'a2', 'a3', 'a4', 'a5'], 3)).toEqual([['a1'], ['a2', 'a3', 'a4'], ['a5']])
    expect(rolloutBatches(['a1'], 4)).toEqual([['a1']])
    expect(rolloutBatches([], 2)).toEqual([])
    expect(() => rolloutBatches(['a1'], 0)).toThrow(/batch size/)
  })

  it('keeps a node out of rotation from before its switch until it is healthy (and migrated)', () => {
    expect(activationSteps({balanced: true, hook: true})).toEqual(['drain', 'switch', 'health', 'hook', 'restore'])
    expect(activationSteps({balanced: true, hook: false})).toEqual(['drain', 'switch', 'health', 'restore'])
    expect(activationSteps({balanced: false, hook: true})).toEqual(['switch', 'health', 'hook'])
  })

  it('goes back the same way, and leaves a node with nothing to go back to out of rotation', () => {
    expect(revertSteps({balanced: true, drained: false, to: R1})).toEqual(['drain', 'switch-back', 'health', 'restore'])
    expect(revertSteps({balanced: true, drained: true, to: R1})).toEqual(['switch-back', 'health', 'restore'])
    expect(revertSteps({balanced: true, drained: false})).toEqual(['drain', 'deactivate'])
    expect(revertSteps({balanced: false, drained: false, to: R1})).toEqual(['switch-back', 'health'])
  })
})

describe('releases', () => {
  it('are named by time and content, and sort by time', () => {
    const at = new Date('2025-03-04T05:06:07.890Z')
    const id = releaseId(at, 'ab'.repeat(32))
    expect(id).toBe('20250304T050607Z-abababab')
    expect(id).toMatch(RELEASE_ID_PATTERN)
    expect(releaseTime(id)?.toISOString()).toBe('2025-03-04T05:06:07.000Z')
    expect([R3, R1, R2].sort()).toEqual([R1, R2, R3])
  })

  it('pack an app directory the same way twice, without version control or nodeset state, readable by all', async () => {
    const app = path.join(work, 'app')
    fs.mkdirSync(path.join(app, '.git'), {recursive: true})
    fs.mkdirSync(path.join(app, '.nodeset'), {recursive: true})
    fs.mkdirSync(path.join(app, 'lib'), {recursive: true})
    fs.writeFileSync(path.join(app, 'app.ini'), '[production]\n')
    fs.writeFileSync(path.join(app, 'lib', 'secret-mode.js'), 'x', {mode: 0o600})
    fs.writeFileSync(path.join(app, '.git', 'HEAD'), 'ref')
    fs.writeFileSync(path.join(app, '.nodeset', 'admin-token'), 'secret')
    const one = await packRelease(app, new Date('2025-01-01T00:00:00Z'))
    const two = await packRelease(app, new Date('2025-01-01T00:00:05Z'))
    expect(one.sha256).toBe(two.sha256)
    expect(one.id).toBe(`20250101T000000Z-${one.sha256.slice(0, 8)}`)
    fs.writeFileSync(path.join(work, 'one.tar.gz'), one.archive)
    const listing = execFileSync('tar', ['-tvzf', path.join(work, 'one.tar.gz')], {encoding: 'utf8'})
    expect(listing).toMatch(/^-rw-r--r-- 0\/0 .* \.\/lib\/secret-mode\.js$/m)
    expect(listing).toContain('./app.ini')
    expect(listing).not.toMatch(/\.git|\.nodeset/)
    // Only content counts: touching a file (a fresh checkout, a copy) packs the same bytes.
    fs.utimesSync(path.join(app, 'app.ini'), new Date('2030-01-01'), new Date('2030-01-01'))
    expect((await packRelease(app)).sha256).toBe(one.sha256)
    fs.writeFileSync(path.join(app, 'app.ini'), '[production]\n# changed\n')
    expect((await packRelease(app)).sha256).not.toBe(one.sha256)
  })

  it('read back from a node: current, history, the releases on disk', () => {
    const listing = parseListing(
      `current ${R3}\nhistory ${R1}\nhistory ${R3}\nrelease ${R2} 2025-01-02T00:00:00.000Z /health\nrelease ${R1} - /\nrelease ${R3} 2025-01-03T00:00:00.000Z /up\nrelease bogus x\nrunning yes\n`,
    )
    expect(listing).toEqual({
      current: R3,
      history: [R1, R3],
      releases: [
        {id: R1, createdAt: undefined, healthCheck: '/'},
        {id: R2, createdAt: '2025-01-02T00:00:00.000Z', healthCheck: '/health'},
        {id: R3, createdAt: '2025-01-03T00:00:00.000Z', healthCheck: '/up'},
      ],
      running: true,
    })
    expect(previousRelease(listing)).toBe(R1)
    expect(releaseRows(listing)).toEqual([
      {id: R3, createdAt: '2025-01-03T00:00:00.000Z', current: true, previous: false},
      {id: R2, createdAt: '2025-01-02T00:00:00.000Z', current: false, previous: false},
      {id: R1, createdAt: '2025-01-01T00:00:00.000Z', current: false, previous: true},
    ])
    expect(parseListing('')).toEqual({history: [], releases: [], running: false})
  })

  it('the listing script, run on a real release tree, reads back each release with its sha256', () => {
    const apps = path.join(work, 'srv-apps')
    const sha = 'ab'.repeat(32)
    for (const [id, created] of [
      [R1, '2025-01-01T00:00:00.000Z'],
      [R2, '2025-01-02T00:00:00.000Z'],
    ]) {
      fs.mkdirSync(path.join(apps, 'shop', 'releases', id, '.nodeset'), {recursive: true})
      fs.writeFileSync(path.join(apps, 'shop', 'releases', id, '.nodeset', 'created'), `${created}\n`)
      fs.writeFileSync(path.join(apps, 'shop', 'releases', id, '.nodeset', 'health'), '/health\n')
    }
    fs.writeFileSync(path.join(apps, 'shop', 'releases', R2, '.nodeset', 'sha256'), `${sha}\n`)
    fs.symlinkSync(`releases/${R2}`, path.join(apps, 'shop', 'current'))
    const script = listScript('shop').replace(/^A=.*$/m, `A=${apps}/shop`)
    const listing = parseListing(execFileSync('sh', ['-c', script], {encoding: 'utf8'}))
    expect(listing.current).toBe(R2)
    expect(listing.releases).toEqual([
      {id: R1, createdAt: '2025-01-01T00:00:00.000Z', healthCheck: '/health'},
      {id: R2, createdAt: '2025-01-02T00:00:00.000Z', healthCheck: '/health', sha256: sha},
    ])
  })

  it('keep the newest keep_releases, and never the current one or the one before it', () => {
    const releases = [R1, R2, R3, R4].map((id) => ({id, healthCheck: '/'}))
    expect(releasesToPrune({current: R4, history: [R3, R4], releases, running: true}, 2)).toEqual([R1, R2])
    // Rolled back to the oldest: it and the one active before it stay, whatever their age.
    expect(releasesToPrune({current: R1, history: [R1, R2, R4, R1], releases, running: true}, 2)).toEqual([R2])
    expect(releasesToPrune({current: R4, history: [R1, R4], releases, running: true}, 2)).toEqual([R2])
    expect(releasesToPrune({current: R4, history: [R4], releases, running: true}, 5)).toEqual([])
  })
})

/** Run the history step of an activation with real sh and awk, as a node runs it. */
function activate(dir: string, id: string, direction: 'forward' | 'back'): string[] {
  execFileSync('/bin/sh', ['-c', `set -eu\ntouch "$A/history"\n${historyUpdate(direction)}`], {
    env: {...process.env, A: dir, ID: id},
  })
  return fs.readFileSync(path.join(dir, 'history'), 'utf8').split('\n').filter(Boolean)
}

describe('the activation history', () => {
  it('makes "previous" the release that ran before, through updates, failed updates and rollbacks', () => {
    const dir = fs.mkdtempSync(path.join(work, 'history-'))
    const previous = (history: string[]) =>
      previousRelease({current: history.at(-1), history, releases: [], running: true})
    expect(activate(dir, R1, 'forward')).toEqual([R1])
    expect(activate(dir, R2, 'forward')).toEqual([R1, R2])
    expect(activate(dir, R2, 'forward')).toEqual([R1, R2])
    // R3's update fails: its node goes back to R2, and R3 leaves the history.
    activate(dir, R3, 'forward')
    expect(activate(dir, R2, 'back')).toEqual([R1, R2])
    // A rollback to R1, then an update to R4: R1 is what R4 replaced.
    expect(previous(activate(dir, R1, 'back'))).toBeUndefined()
    expect(previous(activate(dir, R4, 'forward'))).toBe(R1)
    // A failed rollback returns to a release no longer in the history: it comes back on top.
    expect(activate(dir, R1, 'back')).toEqual([R1])
    expect(activate(dir, R4, 'back')).toEqual([R1, R4])
  })
})

describe('rollback', () => {
  const listing = (current: string, history: string[], ids = [R1, R2, R3]) => ({
    current,
    history,
    releases: ids.map((id) => ({id, healthCheck: '/'})),
    running: true,
  })

  it('goes to the release before the current one when every appserver agrees', () => {
    expect(
      rollbackTarget(
        new Map([
          ['a1', listing(R2, [R1, R2])],
          ['a2', listing(R2, [R1, R2])],
        ]),
      ),
    ).toBe(R1)
  })

  it('asks for --to when they disagree or there is nothing before, and checks --to is everywhere', () => {
    expect(() =>
      rollbackTarget(
        new Map([
          ['a1', listing(R3, [R1, R3])],
          ['a2', listing(R3, [R2, R3])],
        ]),
      ),
    ).toThrow(
      `the appservers do not agree on the release before the current one (a1: ${R1}, a2: ${R2}): choose one with --to ID`,
    )
    expect(() => rollbackTarget(new Map([['a1', listing(R1, [R1])]]))).toThrow(
      /there is no earlier release to go back to/,
    )
    expect(
      rollbackTarget(
        new Map([
          ['a1', listing(R3, [R3])],
          ['a2', listing(R3, [R3])],
        ]),
        R2,
      ),
    ).toBe(R2)
    expect(() =>
      rollbackTarget(
        new Map([
          ['a1', listing(R3, [R3])],
          ['a2', listing(R3, [R3], [R3])],
        ]),
        R2,
      ),
    ).toThrow(`release ${R2} is not on a2`)
  })
})

describe('scripts for the nodes', () => {
  it('write an environment file that sh reads back exactly, quotes and all', () => {
    const vars = {
      ...baseEnv({app: 'hello', node: 'app1.x.test', release: R1, port: 8081}),
      CONFIG_MYSQL_PASSWORD: `it's $HOME "and" \`x\``,
    }
    const file = path.join(work, 'env')
    fs.writeFileSync(file, envFile(vars))
    const read = execFileSync(
      '/bin/sh',
      [
        '-c',
        'set -a; . "$1"; set +a; printf "%s|%s|%s|%s" "$PORT" "$NODESET_DATA" "$NODESET_RELEASE" "$CONFIG_MYSQL_PASSWORD"',
        'sh',
        file,
      ],
      {encoding: 'utf8', env: {PATH: process.env.PATH}},
    )
    expect(read).toBe(`8081|/srv/nodeset/apps/hello/data|${R1}|it's $HOME "and" \`x\``)
    expect(() => envFile({'BAD-NAME': 'x'})).toThrow(/not valid/)
  })

  it('refuse names and ids that could become code, before anything runs', () => {
    expect(() => switchScript('x; rm -rf /', R1, 'forward')).toThrow(/not a valid app name/)
    expect(() => switchScript('hello', '../../etc', 'back')).toThrow(/not a release id/)
    expect(() =>
      stageScript({
        app: 'hello',
        id: R1,
        sha256: 'nothex',
        createdAt: new Date(),
        command: 'x',
        healthCheck: '/',
        env: {},
      }),
    ).toThrow(/sha256/)
    expect(() => balancerCommand('drain', {ip: '10.0.0.1; reboot', port: 8080})).toThrow(/not an IP address/)
    expect(balancerCommand('restore', {ip: '10.79.1.2', port: 8080})).toBe(
      '/var/lib/nodeset/bin/nodeset-balancer restore 10.79.1.2:8080',
    )
  })

  it('stage a release only after checking the archive against its sha256, with its command and environment beside it', () => {
    const script = stageScript({
      app: 'hello',
      id: R1,
      sha256: 'a'.repeat(64),
      createdAt: new Date('2025-01-01T00:00:00Z'),
      command: "node server.js --name 'x'",
      healthCheck: '/health',
      env: {PORT: '8080'},
    })
    expect(script).toContain(`printf '%s  %s\\n' ${'a'.repeat(64)} "$ARCHIVE" | sha256sum -c --status`)
    expect(script.indexOf('sha256sum -c')).toBeLessThan(script.indexOf('tar -xzf'))
    expect(script).toContain(`printf '%s\\n' 'node server.js --name '\\''x'\\''' > "$R.partial/.nodeset/run"`)
    expect(script).toContain(`(umask 077 && printf '%s' 'PORT='\\''8080'\\''\n' > "$R/.nodeset/env.new"`)
  })

  it('run the migration hook as the app (commands) or against it (paths), stopping at the first failure', () => {
    const script = hookScript({
      app: 'hello',
      port: 8081,
      requestTimeoutSec: 60,
      steps: [
        {kind: 'command', command: 'node migrate.js'},
        {kind: 'request', path: '/setup'},
      ],
    })
    expect(script).toContain("/var/lib/nodeset/bin/nodeset-app run hello 'node migrate.js' < /dev/null")
    expect(script).toContain("-H 'X-Nodeset-Update: 1' --max-time 60 http://127.0.0.1:8081/setup")
    expect(script.startsWith('set -eu\n')).toBe(true)
  })

  it("prepare mysql with the admin password only on stdin's script, keeping an app's password once made", () => {
    const password = generatePassword()
    expect(password).toMatch(/^[A-Za-z0-9]{32}$/)
    expect(generatePassword()).not.toBe(password)
    const script = mysqlPrepareScript({
      app: 'hello',
      newPassword: password,
      port: '3306',
      adminUser: 'nodeset',
      adminPassword: "adm'in",
    })
    expect(script).toContain(`[ -s "$F" ] || printf '%s' ${password} > "$F"`)
    expect(script).toContain(`MYSQL_PWD='adm'\\''in' "$CLIENT" --protocol=tcp -h 127.0.0.1 -P 3306 -u nodeset`)
    expect(script).toContain("CREATE USER IF NOT EXISTS 'hello'@'%' IDENTIFIED BY '$PW';")
    expect(script).toContain('GRANT ALL PRIVILEGES ON \\`hello\\`.* TO')
    expect(() =>
      mysqlPrepareScript({app: 'hello', newPassword: "x' OR 1", port: '3306', adminUser: 'a', adminPassword: 'b'}),
    ).toThrow(/letters and digits/)
  })
})

describe('the scripts, as sh reads them', () => {
  const templates = path.resolve(__dirname, '../../templates/services')
  const syntax = (name: string, script: string) => {
    const file = path.join(work, `${name}.sh`)
    fs.writeFileSync(file, script)
    execFileSync('/bin/sh', ['-n', file])
  }

  it('are valid POSIX sh, every one of them', () => {
    syntax(
      'stage',
      stageScript({
        app: 'hello',
        id: R1,
        sha256: 'f'.repeat(64),
        createdAt: new Date(),
        command: 'node server.js',
        healthCheck: '/health',
        env: {PORT: '8080'},
      }),
    )
    syntax('forward', switchScript('hello', R1, 'forward'))
    syntax('back', switchScript('hello', R1, 'back'))
    syntax('deactivate', deactivateScript('hello', R1))
    syntax('health', healthScript({app: 'hello', port: 8080, path: '/health', timeoutSec: 5}))
    syntax(
      'hook',
      hookScript({
        app: 'hello',
        port: 8080,
        requestTimeoutSec: 5,
        steps: [
          {kind: 'request', path: '/a'},
          {kind: 'command', command: 'true'},
        ],
      }),
    )
    syntax('list', listScript('hello'))
    syntax('prune', pruneScript('hello', [R1, R2]))
    syntax(
      'mysql',
      mysqlPrepareScript({
        app: 'hello',
        newPassword: generatePassword(),
        port: '3306',
        adminUser: 'nodeset',
        adminPassword: 'x',
      }),
    )
    syntax('nodeset-app', fs.readFileSync(path.join(templates, 'appserver/app-supervisor.hbs'), 'utf8'))
    syntax('nodeset-balancer', fs.readFileSync(path.join(templates, 'balancer/balancer-control.hbs'), 'utf8'))
  })

  it('find the nodeset-app they expect: the supervisor says its protocol, and has no handlebars in it', () => {
    const supervisor = fs.readFileSync(path.join(templates, 'appserver/app-supervisor.hbs'), 'utf8')
    expect(supervisor.split('\n')).toContain(SUPERVISOR_PROTOCOL)
    expect(supervisor).not.toContain('{{')
    expect(fs.readFileSync(path.join(templates, 'balancer/balancer-control.hbs'), 'utf8')).not.toContain('{{')
  })
})

describe('targets of an app', () => {
  const loaded = loadPlan(path.resolve(__dirname, '../../examples/local.conf'))
  const {nodeset, result} = loaded
  const names = result.plan.nodes.map((n) => n.name)
  const records: NodeRecord[] = result.plan.nodes.map((n, i) => ({
    deployment: 'local-demo',
    name: n.name,
    role: n.role,
    index: n.index,
    id: `ns-${i}`,
    address: `10.77.0.${i + 2}`,
    state: 'running',
  }))
  const state: DeploymentState = {
    deployment: 'local-demo',
    instances: result.plan.nodes.map((n, i) => {
      const outputs: Record<string, Record<string, string>> = n.role === 'service:mysql'
        ? {mysql: {port: '3306', admin_user: 'nodeset', admin_password: 'pw'}}
        : n.role === 'balancer'
          ? {balancer: {url: 'http://10.77.0.5:80/'}}
          : {}
      return {id: n.name, role: n.role, facts: {ip: `10.77.0.${i + 2}`}, outputs, services: {}}
    }),
  }
  const input = {
    nodeset,
    plan: result.plan,
    loadBalancing: result.loadBalancing,
    records,
    state,
    app: 'hello',
    services: ['mysql'],
    file: 'local.conf',
  }

  it('are the appservers its location names, in order, behind the balancer, with its services', () => {
    const targets = resolveTargets(input)
    expect(names).toEqual(['app1.nodeset.test', 'app2.nodeset.test', 'mysql.nodeset.test', 'balancer.nodeset.test'])
    expect(targets.appservers.map((n) => [n.name, n.ip])).toEqual([
      ['app1.nodeset.test', '10.77.0.2'],
      ['app2.nodeset.test', '10.77.0.3'],
    ])
    expect(targets.port).toBe(8080)
    expect(targets.balancer?.name).toBe('balancer.nodeset.test')
    expect(targets.services.mysql.map((n) => [n.name, n.outputs.mysql.port])).toEqual([['mysql.nodeset.test', '3306']])
    expect(targets.namesResolve).toBe(true)
    expect(entryUrls(state, [8080])).toEqual(['http://10.77.0.5:80/'])
  })

  it('switch in place with a single appserver: draining it would leave nothing to serve', () => {
    expect(
      resolveTargets({
        ...input,
        plan: {...result.plan, nodes: result.plan.nodes.filter((n) => n.name !== 'app2.nodeset.test')},
      }).balancer,
    ).toBeUndefined()
  })

  it('say what to run when a node is missing or has not phoned home, or the app has no location', () => {
    expect(() => resolveTargets({...input, records: records.slice(1)})).toThrow(
      'node app1.nodeset.test does not exist: run nodeset create-node local.conf and nodeset setup-node local.conf first',
    )
    expect(() =>
      resolveTargets({
        ...input,
        state: {
          ...state,
          instances: state.instances.map((i) => (i.id === 'app2.nodeset.test' ? {...i, facts: {}} : i)),
        },
      }),
    ).toThrow(/node app2\.nodeset\.test has not phoned home/)
    expect(() => resolveTargets({...input, app: 'blog'})).toThrow('app "blog" is not in the locations of local.conf')
  })
})

describe('reports', () => {
  it('say what failed where, and where each appserver was left', () => {
    const text = failureSummary(
      {
        app: 'hello',
        release: R2,
        ok: false,
        failure: {node: 'app1', step: 'hook', message: 'update_fetch hook failed on node app1 with exit code 1'},
        nodes: [
          {node: 'app1', before: R1, target: R2, release: R1, outcome: 'reverted', inRotation: true},
          {node: 'app2', before: undefined, target: R2, release: undefined, outcome: 'deactivated', inRotation: false},
        ],
        pruned: {},
      },
      'update',
    )
    expect(text).toBe(
      `update of hello to ${R2} failed at hook on app1: update_fetch hook failed on node app1 with exit code 1\nappservers now:\n  app1: reverted, runs ${R1}\n  app2: deactivated, runs nothing, out of rotation`,
    )
  })
})
