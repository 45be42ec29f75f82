/**
 * `plan` checks the [provider] settings the way the commands that reach the provider do, offline: a
 * malformed id, a key the provider would ignore and a template mistake are refused together, exit
 * code 2, with file:line, and nothing calls AWS. The CLI part runs the built CLI (`npm run -s build`
 * first) against a loopback EC2 endpoint that counts what it is asked.
 */
import fs from 'node:fs'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {EC2Client} from '@aws-sdk/client-ec2'
import {mockClient} from 'aws-sdk-client-mock'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {DiagnosticsError, formatDiagnostic, type Diagnostic} from '../../src/core/diagnostics.js'
import {loadPlan} from '../../src/operations/load.js'
import {openProvider} from '../../src/providers/index.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'
import {ROOT, runCli} from '../helpers/cli.js'

const SECRET = 's3cr3t-value-never-shown'
const SERVICES = path.join(ROOT, 'test/fixtures/services')

/** An ec2 nodeset: line 9 a malformed subnet id, line 10 an ignored secret, line 14 an unknown helper. */
const BROKEN = `[general]
name = pf
base_domain = pf.test
services_dir = ${SERVICES}
[provider]
provider = ec2
region = eu-west-1
image = name debian-12-amd64-*
subnet = subnet-12
secret = ${SECRET}
[service:mysql]
[role:probe]
services = probe
probe.db_host = {{outptu "service:mysql" "port"}}
`
const GOOD = `[general]
name = pf
base_domain = pf.test
[provider]
provider = ec2
region = eu-west-1
image = name debian-12-amd64-*
subnet = subnet-0abc1234
[appserver]
`

const ec2Mock = mockClient(EC2Client)
let dir: string

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-preflight-'))
  fs.writeFileSync(path.join(dir, 'broken.conf'), BROKEN)
  fs.writeFileSync(path.join(dir, 'good.conf'), GOOD)
})
beforeEach(() => ec2Mock.reset())
afterAll(() => {
  ec2Mock.restore()
  fs.rmSync(dir, {recursive: true, force: true})
})

/** Every problem loadPlan reports for a file, thrown or in the plan's analysis, formatted. */
function problemsOf(file: string): string[] {
  let found: Diagnostic[]
  try {
    found = loadPlan(file).result.analysis.problems
  } catch (error) {
    if (!(error instanceof DiagnosticsError)) throw error
    found = error.diagnostics
  }
  return found.map(formatDiagnostic)
}

const at = (line: number) => `${path.join(dir, 'broken.conf')}:${line}`
const expected = () => [
  expect.stringMatching(
    new RegExp(`^${at(9)}: subnet "subnet-12" is not a subnet id \\(subnet- and 8 or 17 hex digits\\)\\n  hint: `),
  ),
  `${at(10)}: the ec2 provider does not use secret\n  hint: remove secret: the ec2 provider takes credentials from the AWS SDK's chain. Name a profile of ~/.aws/config with "profile = NAME" (or --profile), or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
  expect.stringMatching(
    new RegExp(
      `^${at(14)}: param db_host of probe: \\{\\{outptu "service:mysql" "port"\\}\\}: unknown helper "outptu"`,
    ),
  ),
]

describe('plan refuses bad provider settings with the other problems, offline', () => {
  it('reports the malformed subnet, the ignored secret and the unknown helper at once, without a call to AWS', () => {
    const problems = problemsOf(path.join(dir, 'broken.conf'))
    expect(problems).toEqual(expect.arrayContaining(expected()))
    expect(problems.join('\n')).not.toContain(SECRET)
    expect(ec2Mock.calls()).toHaveLength(0)
  })

  it('passes a good ec2 file, whose provider then reaches EC2 (the mocked client counts that call)', async () => {
    const loaded = loadPlan(path.join(dir, 'good.conf'))
    expect(loaded.result.analysis.problems).toEqual([])
    expect(loaded.warnings.map((w) => w.message)).toEqual([
      'EC2 nodes cannot reach a config server embedded in the command on your machine: create-node and up will refuse',
    ])
    expect(ec2Mock.calls()).toHaveLength(0)
    const provider = openProvider(loaded.nodeset, loaded.result.plan, {
      deployment: 'pf',
      stateDir: path.join(dir, '.nodeset/pf'),
      hostKeys: new HostKeyStore(path.join(dir, '.nodeset/pf/known_hosts')),
      sshKey: () => ({privateKeyPath: '/nonexistent', publicKey: 'ssh-ed25519 AAAA'}),
    })
    expect(ec2Mock.calls()).toHaveLength(0)
    ec2Mock.resolves({Reservations: []})
    expect(await provider.list()).toEqual([])
    expect(ec2Mock.calls()).toHaveLength(1)
  })
})

describe('the built CLI against a loopback EC2 endpoint', () => {
  let server: http.Server
  let actions: string[]
  let env: Record<string, string>

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = ''
      req.on('data', (chunk) => (body += chunk))
      req.on('end', () => {
        actions.push(new URLSearchParams(body).get('Action') ?? '')
        res
          .writeHead(200, {'content-type': 'text/xml'})
          .end(
            '<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse><requestId>r</requestId><reservationSet/></DescribeInstancesResponse>',
          )
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    env = {
      HOME: dir,
      AWS_ENDPOINT_URL_EC2: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'example-only',
      AWS_EC2_METADATA_DISABLED: 'true',
    }
    // The CLI is to decide about the SDK's Node-version warning itself.
    delete process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED
  })
  beforeEach(() => {
    actions = []
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it.each([['plan'], ['list-nodes']])(
    '%s refuses the broken file with all three problems, exit code 2, and asks EC2 nothing',
    async (command) => {
      const {code, stdout, stderr} = await runCli([command, path.join(dir, 'broken.conf')], {env})
      expect(code).toBe(2)
      const said = stderr.split(/\n(?=\S)/)
      expect(said).toEqual(expect.arrayContaining(expected()))
      expect(stdout + stderr).not.toContain(SECRET)
      expect(stderr).not.toMatch(/\n\s+at \S+ \(/)
      expect(actions).toEqual([])
    },
  )

  it('list-nodes on the good file asks EC2 (so the endpoint is the one in use), without the SDK Node warning', async () => {
    const {code, stderr} = await runCli(['list-nodes', path.join(dir, 'good.conf')], {env})
    expect([code, stderr]).toEqual([0, expect.any(String)])
    expect(actions).toEqual(['DescribeInstances'])
    expect(stderr).not.toContain('NodeVersionSupportWarning')
  })
})
