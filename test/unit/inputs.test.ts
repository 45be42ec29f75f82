/**
 * Params given at launch: `SERVICE.PARAM = {{input}}` in the file and `"input": true` in service.json,
 * what the plan lists as awaited, `--set` and values files, collecting them (asked, or every missing
 * one listed), and their way into the config server's registration.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {HttpError} from '../../src/configserver/errors.js'
import {planRegistration} from '../../src/configserver/register.js'
import {registrationFor} from '../../src/configserver/registration.js'
import {DiagnosticsError, formatDiagnostic} from '../../src/core/diagnostics.js'
import {UserError} from '../../src/core/errors.js'
import {formatSource} from '../../src/core/source.js'
import type {ReaderIO} from '../../src/nodeset/files.js'
import {readNodeset} from '../../src/nodeset/read.js'
import {collectInputs, parseSets, readValuesFile} from '../../src/operations/inputs.js'
import {planNodeset} from '../../src/plan/plan.js'
import {planJson, planText} from '../../src/plan/render.js'

const services = path.resolve(__dirname, '../fixtures/services')
const main = '/conf/launch.conf'
const FILE = `[general]
name = shop
base_domain = shop.test
services_dir = ${services}
[provider]
provider = local
[role:app]
nodes = 2
services = probe launch
probe.db_host = {{input}}
[service:mysql]
mysql.admin_password = {{ input }}
mysql.port = 3307
`
const io = (text: string): ReaderIO => ({readFile: (f) => (f === main ? text : undefined), env: {}})

function planned(text = FILE) {
  const {nodeset, catalog} = readNodeset(main, io(text))
  return {nodeset, result: planNodeset(nodeset, catalog)}
}

function deployment(text = FILE) {
  const {result} = planned(text)
  return {file: 'launch.conf', result, secrets: [] as string[]}
}

function diagnostics(fn: () => unknown): string[] {
  try {
    fn()
  } catch (error) {
    if (error instanceof DiagnosticsError) return error.diagnostics.map(formatDiagnostic)
    throw error
  }
  throw new Error('expected a refusal')
}

async function refusal(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!(error instanceof Error)) throw new Error('expected a refusal')
  return error
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-inputs-'))

describe('params left to launch time in the nodeset file', () => {
  it('plans {{input}} and "input": true as awaited inputs, one per role, listed by plan with where they are', () => {
    const {nodeset, result} = planned()
    expect(result.analysis.problems).toEqual([])
    expect(
      result.inputs.map((i) => [i.key, i.nodes, i.secret, `${path.basename(i.source!.file)}:${i.source!.line}`]),
    ).toEqual([
      ['role:app.probe.db_host', ['app1.shop.test', 'app2.shop.test'], false, 'launch.conf:10'],
      ['role:app.launch.greeting', ['app1.shop.test', 'app2.shop.test'], false, 'service.json:4'],
      ['role:app.launch.api_token', ['app1.shop.test', 'app2.shop.test'], true, 'service.json:5'],
      ['service:mysql.mysql.admin_password', ['mysql.shop.test'], true, 'launch.conf:12'],
    ])
    const app = result.plan.steps.find((s) => s.node === 'app1.shop.test' && s.service === 'probe')!
    expect(app.params).toEqual([
      {name: 'db_host', value: '', source: {file: main, line: 10}, secret: false, input: true},
    ])
    const text = planText(nodeset, result)
    expect(text).toContain('awaited at launch (4):')
    expect(text).toMatch(/^service:mysql\.mysql\.admin_password\s+1\s+\(secret\) Password of the admin user/m)
    expect(text).toContain('--set INPUT=VALUE or --values FILE')
    const json = planJson(nodeset, result) as {inputs: Array<{key: string}>; steps: Array<{params: object}>}
    expect(json.inputs.map((i) => i.key)).toContain('role:app.launch.api_token')
    expect(json.steps.find((s) => 'admin_password' in s.params)!.params).toEqual({
      port: '3307',
      admin_password: '{{input}}',
    })
  })

  it('never takes {{input}} for a secret value to hide', () => {
    const {nodeset} = planned()
    expect(nodeset.secrets).not.toContain('{{input}}')
    expect(nodeset.secrets).not.toContain('{{ input }}')
  })

  it('refuses {{input}} as part of a value, and anywhere a template is rendered, with file:line', () => {
    expect(
      diagnostics(() => planned(FILE.replace('probe.db_host = {{input}}', 'probe.db_host = db-{{input}}'))),
    ).toEqual([
      `${main}:10: "probe.db_host": {{input}} must be the whole value, not part of "db-{{input}}"\n` +
        '  hint: write "probe.db_host = {{input}}" to give the whole param when launching (--set role:app.probe.db_host=VALUE); a param cannot combine an input with other text',
    ])
    expect(diagnostics(() => planned(FILE.replace('{{input}}', '{{input "x"}}')))[0]).toContain(
      '{{input}} must be the whole value',
    )
    const {result} = planned(FILE.replace('probe.db_host = {{input}}', 'probe.db_host = {{#if input}}x{{/if}}'))
    expect(result.analysis.problems.map((p) => [p.source?.line, p.message])).toEqual([
      [10, 'param db_host of probe: {{#if input}}: unknown variable "input"'],
    ])
    expect(result.analysis.problems[0].hint).toMatch(/^\{\{input\}\} is only ever a whole value in the nodeset file/)
  })

  it('refuses a service param that is "input": true with a default, at its line of service.json', () => {
    const conf = path.resolve(__dirname, '../fixtures/broken/input-default.conf')
    expect(diagnostics(() => readNodeset(conf))).toEqual([
      `${formatSource({file: path.resolve(__dirname, '../fixtures/broken/svc-input/keyed/service.json'), line: 5})}: service keyed: param key is "input": true and has a default\n` +
        '  hint: an input is given at launch: drop its "default", or drop "input" to keep the default',
    ])
  })
})

describe('--set and values files', () => {
  it('reads ROLE.SERVICE.PARAM=VALUE, the value as given (with = in it, or empty)', () => {
    expect(parseSets(['service:mysql.mysql.admin_password=a=b c', 'app.probe.db_host=', 'role:x.s.p.q=1'])).toEqual([
      {
        target: 'service:mysql',
        service: 'mysql',
        param: 'admin_password',
        value: 'a=b c',
        from: '--set service:mysql.mysql.admin_password',
      },
      {target: 'app', service: 'probe', param: 'db_host', value: '', from: '--set app.probe.db_host'},
      {target: 'role:x', service: 's', param: 'p.q', value: '1', from: '--set role:x.s.p.q'},
    ])
  })

  it('names every malformed --set at once', () => {
    expect(diagnostics(() => parseSets(['mysql.admin_password=x', 'app.probe.db_host', '.a.b=1', 'a..b=1']))).toEqual(
      [
        '--set mysql.admin_password: not ROLE.SERVICE.PARAM',
        '--set app.probe.db_host: no "=VALUE"',
        '--set .a.b: not ROLE.SERVICE.PARAM',
        '--set a..b: not ROLE.SERVICE.PARAM',
      ].map(
        (m) =>
          `${m}\n  hint: write --set ROLE.SERVICE.PARAM=VALUE, ROLE as the section of the nodeset file: service:mysql, appserver…`,
      ),
    )
  })

  it('reads a values file of role sections, each value as written: " #" and ";" stay, whole-line comments go', () => {
    const file = path.join(tmp(), 'launch.ini')
    fs.writeFileSync(
      file,
      '# values for launch\n[service:mysql]\nmysql.admin_password = p#ss ;w0rd # not a comment\n; a comment\n' +
        '[role:app]\nlaunch.greeting = first\n  second\n',
    )
    expect(readValuesFile(file)).toEqual([
      {
        target: 'service:mysql',
        service: 'mysql',
        param: 'admin_password',
        value: 'p#ss ;w0rd # not a comment',
        from: `${file}:3`,
        source: {file, line: 3},
      },
      {
        target: 'role:app',
        service: 'launch',
        param: 'greeting',
        value: 'first\nsecond',
        from: `${file}:6`,
        source: {file, line: 6},
      },
    ])
  })

  it('refuses a values file that is not one, and every wrong line of one, with file:line', () => {
    const dir = tmp()
    expect(diagnostics(() => readValuesFile(path.join(dir, 'none.ini')))).toEqual([
      `values file ${path.join(dir, 'none.ini')} does not exist\n  hint: name a text file of [ROLE] sections with SERVICE.PARAM = value lines`,
    ])
    expect(diagnostics(() => readValuesFile(dir))[0]).toBe(
      `values file ${dir} is a directory, not a file\n  hint: name a text file of [ROLE] sections with SERVICE.PARAM = value lines`,
    )
    const file = path.join(dir, 'bad.ini')
    fs.writeFileSync(
      file,
      'orphan = 1\n[general]\nname = x\n[appserver]\nappserver.port += 1\nport = 2\nprobe.db_host = a\nprobe.db_host = b\n',
    )
    expect(diagnostics(() => readValuesFile(file)).map((d) => d.split('\n')[0])).toEqual([
      `${file}:1: "orphan" is set before any [section]`,
      `${file}:2: [general] is not a role section`,
      `${file}:5: "appserver.port +=": a values file only sets values`,
      `${file}:6: "port" is not SERVICE.PARAM`,
      `${file}:8: probe.db_host is set twice in [appserver] (first at line 7)`,
    ])
  })
})

describe('collecting the inputs', () => {
  it('takes --set over the values file, asks for the rest (hidden when secret), one value for every node of the role', async () => {
    const dep = deployment()
    const file = path.join(tmp(), 'launch.ini')
    fs.writeFileSync(file, '[role:app]\nprobe.db_host = from-file\nlaunch.api_token = tok # 0451\n')
    const asked: Array<[string, boolean]> = []
    const inputs = await collectInputs(dep, {
      sets: ['app.probe.db_host=10.9.8.7', 'role:app.launch.greeting=hello'],
      valuesFile: file,
      ask: async (question, {secret}) => {
        asked.push([question, secret])
        return 'typed-s3cret'
      },
    })
    expect(asked).toEqual([
      [
        'service:mysql.mysql.admin_password (Password of the admin user nodeset uses to create app databases (generated when unset); mysql.shop.test)',
        true,
      ],
    ])
    const app = {probe: {db_host: '10.9.8.7'}, launch: {greeting: 'hello', api_token: 'tok # 0451'}}
    expect(inputs).toEqual({
      'app1.shop.test': app,
      'app2.shop.test': app,
      'mysql.shop.test': {mysql: {admin_password: 'typed-s3cret'}},
    })
    expect(dep.secrets.sort()).toEqual(['tok # 0451', 'typed-s3cret'])
  })

  it('without a terminal lists every missing input and gives none: exit code 2', async () => {
    const dep = deployment()
    const error = await refusal(
      collectInputs(dep, {sets: ['role:app.launch.greeting=hello'], ask: async () => undefined}),
    )
    expect(error).toBeInstanceOf(UserError)
    expect((error as UserError).exitCode).toBe(2)
    expect(error.message).toBe(
      [
        '3 params of launch.conf are given at launch and have no value; nothing was created or changed:',
        `  role:app.probe.db_host (An address)  ${main}:10`,
        `  role:app.launch.api_token (secret, A secret given at launch)  ${formatSource({file: `${services}/launch/service.json`, line: 5})}`,
        `  service:mysql.mysql.admin_password (secret, Password of the admin user nodeset uses to create app databases (generated when unset))  ${main}:12`,
        '  hint: give each with --set role:app.probe.db_host=VALUE or in a --values file ([role:app] probe.db_host = VALUE), or run on a terminal to be asked',
      ].join('\n'),
    )
    expect(dep.secrets).toEqual([])
    // An empty answer is no answer.
    const empty = await refusal(collectInputs(deployment(), {ask: async () => ''}))
    expect(empty.message).toMatch(/^4 params of launch.conf/)
  })

  it('refuses a value for a param that is not given at launch, or that does not exist, before asking anything', async () => {
    const dep = deployment()
    let asked = 0
    const ask = async () => {
      asked++
      return 'x'
    }
    const error = await refusal(
      collectInputs(dep, {
        sets: ['service:mysql.mysql.port=1', 'role:app.probe.db_hots=1', 'app.launch.greting=1', 'nobody.x.y=1'],
        ask,
      }),
    )
    expect(error).toBeInstanceOf(DiagnosticsError)
    expect((error as DiagnosticsError).diagnostics.map(formatDiagnostic)).toEqual([
      `--set service:mysql.mysql.port: service:mysql.mysql.port is not given at launch: its value is set at ${main}:13\n` +
        '  hint: to give it at launch, write "mysql.port = {{input}}" in its role\'s section of launch.conf',
      '--set role:app.probe.db_hots: role:app.probe.db_hots names no param of launch.conf\n  hint: did you mean role:app.probe.db_host?',
      '--set app.launch.greting: app.launch.greting names no param of launch.conf\n  hint: did you mean app.launch.greeting?',
      '--set nobody.x.y: nobody.x.y names no param of launch.conf\n' +
        '  hint: the params given at launch: role:app.probe.db_host, role:app.launch.greeting, role:app.launch.api_token, service:mysql.mysql.admin_password',
    ])
    expect(asked).toBe(0)
  })

  it('is nothing to do for a file that leaves nothing to launch time', async () => {
    const dep = deployment(
      FILE.replace(/^probe.db_host = .*$/m, '')
        .replace('services = probe launch', 'services = probe')
        .replace(/^mysql.admin_password.*$/m, ''),
    )
    expect(dep.result.inputs).toEqual([])
    expect(await collectInputs(dep, {ask: async () => 'never'})).toEqual({})
  })
})

describe('registration with inputs', () => {
  it('sends launch-time params as inputs, which the config server takes, and refuses without them', async () => {
    const dep = deployment()
    const inputs = await collectInputs(dep, {
      sets: [
        'app.probe.db_host=10.9.8.7',
        'app.launch.greeting=hi',
        'app.launch.api_token=t0ken',
        'service:mysql.mysql.admin_password=pw-1234',
      ],
    })
    const request = registrationFor(dep.result.plan, {inputs})
    const mysql = request.instances.find((i) => i.id === 'mysql.shop.test')!
    expect(mysql.services![0].params).toEqual({
      port: {value: '3307', secret: false, source: {file: main, line: 13}},
      admin_password: {input: true, secret: true, source: {file: main, line: 12}},
    })
    expect(request.inputs).toBe(inputs)
    expect(planRegistration('shop', request).inputs['app2.shop.test']).toEqual({
      probe: {db_host: '10.9.8.7'},
      launch: {greeting: 'hi', api_token: 't0ken'},
    })
    const refused = (() => {
      try {
        planRegistration('shop', registrationFor(dep.result.plan))
      } catch (error) {
        return error
      }
    })()
    expect(refused).toBeInstanceOf(HttpError)
    expect((refused as HttpError).message).toMatch(/^missing inputs: app1\.shop\.test\/probe\/db_host, /)
  })
})
