/**
 * setupNodes without hosts: every node is an in-memory session that keeps what a node keeps under
 * /var/lib/nodeset/steps (the hash and outputs of each step's last success), and the config server
 * is an in-memory one that keeps facts and published outputs.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import type {DeploymentState, ServiceReport} from '../../src/configserver/protocol.js'
import {REDACTED} from '../../src/core/redact.js'
import type {Plan} from '../../src/plan/types.js'
import type {NodeRecord} from '../../src/providers/provider.js'
import type {Catalog, ServiceDefinition} from '../../src/services/catalog.js'
import {contentHash, recordedStepsCommand} from '../../src/setup/commands.js'
import {
  chainFrom,
  setupNodes,
  type SetupContext,
  type SetupEvent,
  type SetupServer,
  withReportedSshPort,
} from '../../src/setup/runner.js'
import type {StepReport, StepStatus} from '../../src/setup/steps.js'
import type {ExecResult, Session} from '../../src/ssh/session.js'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-runner-'))
afterAll(() => fs.rmSync(work, {recursive: true, force: true}))

const PASSWORD = 's3cret-pw-4711'
/** A secret known before the run (a provider's, say). */
const KNOWN_SECRET = 'provider-secret-0815'
const DB = 'db.shop.test'
const APP1 = 'app1.shop.test'
const APP2 = 'app2.shop.test'

const plan: Plan = {
  deployment: 'shop',
  setEtcHosts: true,
  nodes: [
    {name: DB, role: 'service:db', index: 1, services: ['db']},
    {name: APP1, role: 'appserver', index: 1, services: ['web', 'cron']},
    {name: APP2, role: 'appserver', index: 2, services: ['broken', 'later']},
  ],
  steps: [
    {node: DB, service: 'db', params: [], provides: ['password', 'port'], after: []},
    {
      node: APP1,
      service: 'web',
      params: [
        {name: 'db_password', value: '{{output "service:db" "password"}}', secret: true},
        {name: 'db_host', value: '{{ip "service:db"}}', secret: false},
      ],
      provides: ['url'],
      after: [],
    },
    // Refers to an output that nothing provides.
    {
      node: APP1,
      service: 'cron',
      params: [{name: 'x', value: '{{output "service:db" "db" "replica"}}', secret: false}],
      provides: [],
      after: [],
    },
    {node: APP2, service: 'broken', params: [], provides: [], after: []},
    {node: APP2, service: 'later', params: [], provides: [], after: ['broken']},
  ],
  references: [
    {
      from: {node: APP1, service: 'web', param: 'db_password'},
      kind: 'output',
      to: {node: DB, service: 'db'},
      key: 'password',
      expression: '{{output "service:db" "password"}}',
    },
  ],
}

const service = (name: string, script: string, provides: string[] = []): ServiceDefinition => ({
  name,
  description: name,
  params: {},
  provides,
  after: [],
  roles: [],
  dir: `/services/${name}`,
  scriptPath: `/services/${name}/setup.sh.hbs`,
  script,
  partials: {},
  partialPaths: {},
  builtin: false,
})

const catalog: Catalog = new Map([
  ['db', service('db', 'echo starting the database\n', ['password', 'port'])],
  ['web', service('web', 'echo "connecting to {{params.db_host}} as app with {{params.db_password}}"\n', ['url'])],
  ['cron', service('cron', 'echo {{params.x}}\n')],
  ['broken', service('broken', 'exit 3\n')],
  ['later', service('later', 'echo later\n')],
])

/** What a node does when a step's script runs. */
interface Behaviour {
  code?: number
  /** Output, in the chunks it arrives in. */
  stdout?: string[]
  stderr?: string
  /** What the script wrote to $NODESET_OUTPUT. */
  outputs?: string
}

/** A node in memory: it keeps what a node keeps under /var/lib/nodeset/steps, each step's hash and outputs. */
class FakeNode {
  readonly recorded = new Map<string, {hash: string; outputs: string}>()
  /** The script of each step's last run. */
  readonly scripts = new Map<string, string>()
  readonly sessions: FakeSession[] = []
  /** Commands run on it, in order. */
  readonly commands: string[] = []

  constructor(readonly behave: (step: string, script: string) => Behaviour) {}

  connect(): FakeSession {
    const session = new FakeSession(this)
    this.sessions.push(session)
    return session
  }
}

/** A session to a fake node: it speaks the step protocol of commands.ts. */
class FakeSession implements Session {
  closed = false

  constructor(private readonly node: FakeNode) {}

  async exec(command: string, opts: Parameters<Session['exec']>[1] = {}): Promise<ExecResult> {
    if (this.closed) throw new Error('session closed')
    await new Promise((resolve) => setImmediate(resolve))
    this.node.commands.push(command)
    if (command === recordedStepsCommand()) return {code: 0, stdout: this.listing(), stderr: ''}
    // The steps of the command, in order, each with its script: the whole input for one step, else
    // the lengths the command cuts the input into.
    const steps = [...command.matchAll(/NODESET_SERVICE=(\S+) sh/g)].map((m) => m[1])
    const input = Buffer.from(String(opts.stdin))
    const lengths =
      steps.length === 1 ? [input.length] : [...command.matchAll(/head -c (\d+)/g)].map((m) => Number(m[1]))
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(input.length)
    const marker = /(nodeset-unchanged-[0-9a-f]+):outputs/.exec(command)![1]
    let stdout = ''
    let stderr = ''
    const say = (text: string, stream: 'stdout' | 'stderr' = 'stdout') => {
      if (stream === 'stdout') stdout += text
      else stderr += text
      if (text) opts.onOutput?.(text, stream)
    }
    // The node's first step says what the node recorded before anything else.
    if (command.includes(`(${recordedStepsCommand()})`)) say(`${this.listing()}${marker}:recorded\n`)
    let offset = 0
    for (const [i, step] of steps.entries()) {
      const script = input.subarray(offset, offset + lengths[i]).toString()
      offset += lengths[i]
      const hash = contentHash(script)
      if (!command.includes(hash)) throw new Error(`not the step command of ${step}: ${command}`)
      if (i > 0) {
        say(`${marker}:next\n`)
        say(`${marker}:next\n`, 'stderr')
      }
      const before = this.node.recorded.get(step)
      if (command.includes(`${marker}:unchanged`) && before?.hash === hash) {
        say(`${marker}:unchanged\n${before.outputs}`)
        continue
      }
      this.node.scripts.set(step, script)
      const run = this.node.behave(step, script)
      for (const chunk of run.stdout ?? []) say(chunk)
      if (run.stderr) say(run.stderr, 'stderr')
      const code = run.code ?? 0
      if (code !== 0) return {code, stdout, stderr}
      this.node.recorded.set(step, {hash, outputs: run.outputs ?? ''})
      say(`${marker}:outputs\n${run.outputs ?? ''}`)
    }
    return {code: 0, stdout, stderr}
  }

  /** What recordedStepsCommand prints on this node. */
  private listing(): string {
    return [...this.node.recorded]
      .map(([s, r]) => `${s} ${r.hash} ${Buffer.from(r.outputs).toString('base64')}\n`)
      .join('')
  }

  close(): void {
    this.closed = true
  }
}

/** A config server in memory: facts as the nodes reported them, and every service report. */
function fakeServer(facts: Record<string, Record<string, unknown>>) {
  const outputs: Record<string, Record<string, Record<string, string>>> = {}
  const reports: Array<{node: string; service: string} & ServiceReport> = []
  const server: SetupServer = {
    state: async (): Promise<DeploymentState> => ({
      deployment: plan.deployment,
      instances: plan.nodes.map((n) => ({
        id: n.name,
        role: n.role,
        index: n.index,
        facts: facts[n.name] ?? {},
        outputs: structuredClone(outputs[n.name] ?? {}),
        services: {},
      })),
    }),
    reportService: async (node, svc, report) => {
      reports.push({node, service: svc, ...report})
      if (report.state === 'succeeded') (outputs[node] ??= {})[svc] = {...report.outputs}
      return {state: report.state}
    },
  }
  return {server, reports}
}

const ips = {[DB]: {ip: '10.0.0.5'}, [APP1]: {ip: '10.0.0.2'}, [APP2]: {ip: '10.0.0.3'}}
const record = (name: string): NodeRecord => ({name}) as NodeRecord

function behaviour(step: string, script: string): Behaviour {
  if (step === 'db')
    return {
      stdout: ['starting the database on db.shop.test, port 3306\n'],
      outputs: `password=${PASSWORD}\nport=3306\nextra=dropped\n`,
    }
  // web echoes its line, in chunks that cut the password in two.
  if (step === 'web') {
    const line = /echo "(.*)"/.exec(script)![1]
    return {stdout: [line.slice(0, 3), line.slice(3, -4), line.slice(-4) + '\n']}
  }
  if (step === 'broken')
    return {code: 3, stdout: ['preparing\n'], stderr: `cannot configure the frobnicator (key ${KNOWN_SECRET})\n`}
  return {stdout: [`${step} ok\n`]}
}

function run(
  nodes: Record<string, FakeNode>,
  server: SetupServer,
  opts: Partial<SetupContext> & {dir?: string} = {},
): Promise<{reports: Map<string, StepReport>; events: SetupEvent[]; connects: string[]}> {
  const events: SetupEvent[] = []
  const connects: string[] = []
  const dir = opts.dir ?? fs.mkdtempSync(path.join(work, 'logs-'))
  return setupNodes({
    plan,
    catalog,
    records: Object.keys(nodes).map(record),
    server,
    connect: async (r) => {
      connects.push(r.name)
      return nodes[r.name].connect()
    },
    logFile: (node, step) => path.join(dir, node, `${step}.log`),
    vars: {general: {name: 'shop'}},
    setEtcHosts: true,
    concurrency: 16,
    force: false,
    secrets: [],
    onEvent: (e) => events.push(e),
    ...opts,
  }).then((reports) => ({reports: new Map(reports.map((r) => [`${r.node}/${r.step}`, r])), events, connects}))
}

const statuses = (reports: Map<string, StepReport>) => Object.fromEntries([...reports].map(([k, r]) => [k, r.status]))

describe('setupNodes with nodes in memory', () => {
  const nodes = {[DB]: new FakeNode(behaviour), [APP1]: new FakeNode(behaviour), [APP2]: new FakeNode(behaviour)}
  const {server, reports: served} = fakeServer(ips)
  const secrets = [KNOWN_SECRET]
  const logs = path.join(work, 'first-run')

  it('runs what is ready, waits for outputs, blocks what a failure or a missing value holds up', async () => {
    const {reports, events, connects} = await run(nodes, server, {secrets, dir: logs})
    expect(statuses(reports)).toEqual({
      [`${DB}/base`]: 'done',
      [`${DB}/wiring`]: 'done',
      [`${DB}/db`]: 'done',
      [`${APP1}/base`]: 'done',
      [`${APP1}/wiring`]: 'done',
      [`${APP1}/web`]: 'done',
      [`${APP1}/cron`]: 'blocked',
      [`${APP2}/base`]: 'done',
      [`${APP2}/wiring`]: 'done',
      [`${APP2}/broken`]: 'failed',
      [`${APP2}/later`]: 'blocked',
    })
    expect(reports.get(`${APP2}/later`)!.message).toBe(`blocked by ${APP2}/broken`)
    expect(reports.get(`${APP1}/cron`)!.message).toBe(`waiting for output replica of ${DB}/db, which nothing provided`)
    const broken = reports.get(`${APP2}/broken`)!
    expect(broken.message).toMatch(/^exit code 3 \(log: .*broken\.log\)$/)
    expect(broken.tail).toContain('cannot configure the frobnicator')

    // web waited for the database's password, and got it rendered into its script.
    const at = (key: string, status: string) =>
      events.findIndex((e) => `${e.node}/${e.step}` === key && e.status === status)
    expect(at(`${DB}/db`, 'done')).toBeGreaterThanOrEqual(0)
    expect(at(`${DB}/db`, 'done')).toBeLessThan(at(`${APP1}/web`, 'running'))
    expect(nodes[APP1].scripts.get('web')).toContain(`10.0.0.5 as app with ${PASSWORD}`)
    expect(nodes[APP1].scripts.get('wiring')).toContain('# BEGIN nodeset shop\n10.0.0.2 app1.shop.test app1\n')

    // Steps that follow one another on a node share a round trip, their outputs included; the first also
    // reads what the node recorded. app1's web waits for the database's password: a second round trip.
    expect(nodes[DB].commands).toHaveLength(1)
    expect(nodes[APP1].commands).toHaveLength(2)
    expect(nodes[APP2].commands).toHaveLength(1)
    for (const node of Object.values(nodes)) {
      expect(node.commands.filter((c) => c.includes(`(${recordedStepsCommand()})`))).toHaveLength(1)
      expect(node.commands[0]).toContain(`(${recordedStepsCommand()})`)
    }

    // One session per node, opened once and closed at the end.
    expect(connects.sort()).toEqual([APP1, APP2, DB])
    for (const node of Object.values(nodes)) expect(node.sessions.map((s) => s.closed)).toEqual([true])
  })

  it('publishes the outputs a service declares, and keeps its secrets out of logs and reports', async () => {
    expect(served.filter((r) => r.node === DB)).toEqual([
      {node: DB, service: 'db', state: 'running'},
      {node: DB, service: 'db', state: 'succeeded', exitCode: 0, outputs: {password: PASSWORD, port: '3306'}},
    ])
    expect(served.filter((r) => r.service === 'broken').map((r) => r.state)).toEqual(['running', 'failed'])
    expect(served.find((r) => r.service === 'broken' && r.state === 'failed')).toMatchObject({exitCode: 3})
    expect(secrets).toContain(PASSWORD)

    const web = fs.readFileSync(path.join(logs, APP1, 'web.log'), 'utf8')
    expect(web).toBe(`connecting to 10.0.0.5 as app with ${REDACTED}\n`)
    const brokenLog = fs.readFileSync(path.join(logs, APP2, 'broken.log'), 'utf8')
    expect(brokenLog).toContain('cannot configure the frobnicator')
    expect(brokenLog).toContain(REDACTED)
    const failedReport = JSON.stringify(served.filter((r) => r.state === 'failed'))
    expect(failedReport).toContain('frobnicator')
    for (const text of [brokenLog, failedReport]) expect(text).not.toContain(KNOWN_SECRET)
    expect(fs.statSync(path.join(logs, APP1, 'web.log')).mode & 0o777).toBe(0o600)
  })

  it('skips unchanged steps on a second run, publishing their recorded outputs again, and retries the failure', async () => {
    served.length = 0
    for (const node of Object.values(nodes)) node.commands.length = 0
    const {reports} = await run(nodes, server, {secrets: []})
    // One round trip reads what each node recorded; only the step that failed last time runs again.
    // The first step's round trip also reads what the node recorded: every other unchanged step is then
    // skipped without one.
    for (const node of [DB, APP1] as const) {
      expect(nodes[node].commands).toHaveLength(1)
      expect(nodes[node].commands[0]).toContain(`(${recordedStepsCommand()})`)
    }
    expect(nodes[APP2].commands.length).toBe(1)
    const unchanged = [...reports.values()].filter((r) => r.status === 'skipped').map((r) => `${r.node}/${r.step}`)
    expect(unchanged.sort()).toEqual(
      [
        `${DB}/base`,
        `${DB}/wiring`,
        `${DB}/db`,
        `${APP1}/base`,
        `${APP1}/wiring`,
        `${APP1}/web`,
        `${APP2}/base`,
        `${APP2}/wiring`,
      ].sort(),
    )
    expect(reports.get(`${DB}/db`)!.message).toBe('unchanged')
    expect(reports.get(`${APP2}/broken`)!.status).toBe('failed')
    expect(served.filter((r) => r.node === DB)).toEqual([
      {node: DB, service: 'db', state: 'succeeded', exitCode: 0, outputs: {password: PASSWORD, port: '3306'}},
    ])
    // --force runs them anyway.
    const forced = await run(nodes, server, {force: true})
    expect(forced.reports.get(`${DB}/db`)!.status).toBe('done')
  })

  it('fails the base of a node that has not phoned home or cannot be reached, and goes on with the others', async () => {
    const {server: other} = fakeServer({[DB]: ips[DB], [APP1]: ips[APP1]})
    const fresh: Record<string, FakeNode> = {
      [DB]: new FakeNode(behaviour),
      [APP1]: new FakeNode(behaviour),
      [APP2]: new FakeNode(behaviour),
    }
    const connects: string[] = []
    const {reports} = await run(fresh, other, {
      connect: async (r) => {
        connects.push(r.name)
        if (r.name === APP1) throw new Error(`host key of ${APP1} changed (SHA256:abc, expected SHA256:def)`)
        return fresh[r.name].connect()
      },
    })
    expect(reports.get(`${APP2}/base`)!.message).toMatch(/^app2\.shop\.test has not phoned home to the config server/)
    expect(reports.get(`${APP2}/wiring`)!.message).toBe(`blocked by ${APP2}/base`)
    expect(reports.get(`${APP1}/base`)).toMatchObject({status: 'failed', message: expect.stringMatching(/host key/)})
    expect(reports.get(`${APP1}/web`)!.status).toBe('blocked')
    expect(reports.get(`${DB}/db`)!.status).toBe('done')
    expect(connects).not.toContain(APP2)
  })

  it('runs no more steps at once than its concurrency', async () => {
    const many = () => ({
      [DB]: new FakeNode(behaviour),
      [APP1]: new FakeNode(behaviour),
      [APP2]: new FakeNode(behaviour),
    })
    let inFlight = 0
    let most = 0
    const counted = (fake: Record<string, FakeNode>) => async (r: NodeRecord) => {
      const session = fake[r.name].connect()
      const exec = session.exec.bind(session)
      session.exec = async (...args) => {
        most = Math.max(most, ++inFlight)
        try {
          return await exec(...args)
        } finally {
          inFlight--
        }
      }
      return session
    }
    const one = many()
    await run(one, fakeServer(ips).server, {concurrency: 1, connect: counted(one)})
    expect(most).toBe(1)
    most = 0
    const sixteen = many()
    await run(sixteen, fakeServer(ips).server, {concurrency: 16, connect: counted(sixteen)})
    expect(most).toBeGreaterThan(1)
  })

  it('only rewires: the wiring step of the nodes that exist', async () => {
    const fresh = {[DB]: new FakeNode(behaviour), [APP1]: new FakeNode(behaviour)}
    const {reports} = await run(fresh, fakeServer(ips).server, {wiringOnly: true})
    expect(statuses(reports)).toEqual({[`${DB}/wiring`]: 'done', [`${APP1}/wiring`]: 'done'})
  })

  it("connects to the port a node's sshd reports, else to the provider's", async () => {
    const fresh = {[DB]: new FakeNode(behaviour), [APP1]: new FakeNode(behaviour)}
    const facts = {[DB]: {...ips[DB], sshd_port: 2222}, [APP1]: {...ips[APP1], sshd_port: 'ssh'}}
    const ports: Record<string, number | undefined> = {}
    const records: NodeRecord[] = [
      {...record(DB), sshPort: 22},
      {...record(APP1), sshPort: 22},
    ]
    await run(fresh, fakeServer(facts).server, {
      wiringOnly: true,
      records,
      connect: async (r) => {
        ports[r.name] = r.sshPort
        return fresh[r.name as keyof typeof fresh].connect()
      },
    })
    expect(ports).toEqual({[DB]: 2222, [APP1]: 22})
  })
})

describe('chainFrom', () => {
  const step = (name: string, needs: string[]) => ({node: 'n', name, needs: needs.map((k) => `n/${k}`)})
  const steps = [
    step('base', []),
    step('wiring', ['base']),
    step('a', ['wiring']),
    step('b', ['wiring']),
    step('c', ['a']),
    step('d', ['c']),
  ]
  const none = () => []
  const at = (done: string[]) => (k: string) => (done.includes(k.slice(2)) ? 'done' : 'waiting') as StepStatus

  it('takes the steps that become ready one at a time, and stops where two could run at once', () => {
    expect(chainFrom(steps[0], steps, at([]), new Set(), none).map((s) => s.name)).toEqual(['base', 'wiring'])
    // b is ready already: the scheduler starts it beside a, and a's chain goes on with c and d.
    expect(chainFrom(steps[2], steps, at(['base', 'wiring']), new Set(), none).map((s) => s.name)).toEqual([
      'a',
      'c',
      'd',
    ])
    expect(chainFrom(steps[3], steps, at(['base', 'wiring']), new Set(), none).map((s) => s.name)).toEqual(['b'])
    // Not past a value that is not known yet, nor what another chain claimed.
    const unknownD = (s: {name: string}) => (s.name === 'd' ? ['output x of n/c'] : [])
    expect(chainFrom(steps[2], steps, at(['base', 'wiring']), new Set(), unknownD).map((s) => s.name)).toEqual([
      'a',
      'c',
    ])
    expect(chainFrom(steps[2], steps, at(['base', 'wiring']), new Set(['n/c']), none).map((s) => s.name)).toEqual(['a'])
  })

  it('ends after a service that publishes outputs: what follows is rendered with them', () => {
    const withOutputs = steps.map((s) =>
      s.name === 'a' ? {...s, plan: {node: 'n', service: 'a', params: [], provides: ['url'], after: []}} : s,
    )
    expect(chainFrom(withOutputs[2], withOutputs, at(['base', 'wiring']), new Set(), none).map((s) => s.name)).toEqual([
      'a',
    ])
  })
})

describe('withReportedSshPort', () => {
  it('takes a whole port number, as a number or digits, and nothing else', () => {
    const node = {...record(DB), sshPort: 22}
    expect(withReportedSshPort(node, {sshd_port: '2222'}).sshPort).toBe(2222)
    expect(withReportedSshPort(node, {sshd_port: 2200}).sshPort).toBe(2200)
    for (const bad of [0, 65536, 22.5, '', ' 22', '22;', true, ['2222'], null])
      expect(withReportedSshPort(node, {sshd_port: bad}).sshPort).toBe(22)
    expect(withReportedSshPort(node, {}).sshPort).toBe(22)
  })
})
