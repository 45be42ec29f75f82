/**
 * One factory for every provider: [provider] settings checked with file:line before anything is built,
 * then a provider that knows how its nodes are reached (sshTarget) and how their host keys are verified.
 */
import {DescribeImagesCommand, EC2Client, RunInstancesCommand} from '@aws-sdk/client-ec2'
import {mockClient} from 'aws-sdk-client-mock'
import {afterAll, beforeEach, describe, expect, it} from 'vitest'
import {DiagnosticsError, formatDiagnostic} from '../../src/core/diagnostics.js'
import {UserError} from '../../src/core/errors.js'
import type {ReaderIO} from '../../src/nodeset/merge.js'
import {readNodeset} from '../../src/nodeset/read.js'
import {planNodeset} from '../../src/plan/plan.js'
import {Ec2Provider} from '../../src/providers/ec2.js'
import {checkProviderSettings, openProvider, providerWarnings} from '../../src/providers/index.js'
import {LocalProvider} from '../../src/providers/local.js'
import type {NodeRecord, ProviderContext} from '../../src/providers/provider.js'
import {StaticProvider} from '../../src/providers/static.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'

const main = '/conf/main.conf'
const ec2Mock = mockClient(EC2Client)
beforeEach(() => ec2Mock.reset())
afterAll(() => ec2Mock.restore())
const PUBLIC_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@test'

function read(provider: string, roles = '[appserver]\n[service:mysql]\n', general = '') {
  const io: ReaderIO = {
    readFile: (f) =>
      f === main
        ? `[general]\nname = fx\nbase_domain = fx.test\n${general}[provider]\n${provider}\n${roles}`
        : undefined,
    env: {},
  }
  const {nodeset, catalog} = readNodeset(main, io)
  return {nodeset, plan: planNodeset(nodeset, catalog).plan}
}

function context(opts: {trustOnFirstUse?: boolean} = {}): ProviderContext & {keyAsked: number} {
  const ctx = {
    deployment: 'fx',
    stateDir: '/nonexistent/.nodeset/fx',
    hostKeys: new HostKeyStore('/nonexistent/.nodeset/fx/known_hosts'),
    keyAsked: 0,
    sshKey() {
      ctx.keyAsked++
      return {privateKeyPath: '/nonexistent/.nodeset/fx/id_ed25519', publicKey: PUBLIC_KEY}
    },
    ...opts,
  }
  return ctx
}

const node = (name: string, extra: Partial<NodeRecord> = {}): NodeRecord => ({
  deployment: 'fx',
  name,
  role: 'appserver',
  index: 1,
  id: name,
  state: 'running',
  ...extra,
})

const problems = (provider: string): string[] => {
  const {nodeset, plan} = read(provider)
  return checkProviderSettings(nodeset, plan).map(formatDiagnostic)
}

describe('the local provider, from its settings', () => {
  it("makes the deployment's nodes, reached as root with the operator's key (made on first need), their reported host keys pinned", () => {
    const {nodeset, plan} = read('provider = local\nsubnet = 10.79.4.0/24\nbridge = nsb-fx')
    expect(checkProviderSettings(nodeset, plan)).toEqual([])
    const ctx = context()
    const provider = openProvider(nodeset, plan, ctx)
    expect(provider).toBeInstanceOf(LocalProvider)
    const local = provider as LocalProvider
    expect([local.kind, local.deployment, local.subnet.cidr, local.bridge, local.hostAddress]).toEqual([
      'local',
      'fx',
      '10.79.4.0/24',
      'nsb-fx',
      '10.79.4.1',
    ])
    // The operator's key is made when a node first needs it, not when the provider is opened.
    expect(ctx.keyAsked).toBe(0)
    expect(provider.sshTarget(node('app1.fx.test', {address: '10.79.4.2', sshPort: 22}))).toEqual({
      host: '10.79.4.2',
      port: 22,
      user: 'root',
      nodeName: 'app1.fx.test',
      privateKeyPath: '/nonexistent/.nodeset/fx/id_ed25519',
    })
    expect(provider.hostKeyPolicy()).toEqual({mode: 'pinned', store: ctx.hostKeys})
    expect(provider.hostKeyPolicy().store).toBe(ctx.hostKeys)
  })

  it('refuses a bad subnet and a bad bridge name at their lines, before it makes a key', () => {
    expect(problems('provider = local\nsubnet = 10.79.4.5/24\nbridge = a-bridge-name-too-long')).toEqual([
      '/conf/main.conf:6: subnet 10.79.4.5/24 has host bits set: did you mean 10.79.4.0/24?\n' +
        '  hint: write subnet = 10.77.0.0/24, a network no other interface of this machine uses',
      '/conf/main.conf:7: bridge name "a-bridge-name-too-long" must be 1-15 letters, digits, _ . or -\n' +
        '  hint: remove bridge to use the name derived from the deployment',
    ])
    const {nodeset, plan} = read('provider = local\nsubnet = 10.79.4.0/33')
    const ctx = context()
    expect(() => openProvider(nodeset, plan, ctx)).toThrow(DiagnosticsError)
    expect(ctx.keyAsked).toBe(0)
  })

  it('asks nothing of the machine to be built: no root needed until it acts', () => {
    const {nodeset, plan} = read('provider = local')
    const local = openProvider(nodeset, plan, context()) as LocalProvider
    expect(local.subnet.cidr).toBe('10.77.0.0/24')
    expect(local.bridge).toMatch(/^nsb-fx-[0-9a-f]{4}$/)
  })

  it("refuses other providers' keys, and --region, which it would ignore", () => {
    expect(problems('provider = local\nimage = id ami-0123456789abcdef0\nhosts = a=10.0.0.1')).toEqual([
      '/conf/main.conf:6: image is a key of the ec2 provider: the local provider does not read it\n' +
        '  hint: remove it; the local provider reads subnet, bridge, boot',
      '/conf/main.conf:7: hosts is a key of the static provider: the local provider does not read it\n' +
        '  hint: remove it; the local provider reads subnet, bridge, boot',
    ])
    const {nodeset, plan} = read('provider = local')
    expect(() => openProvider(nodeset, plan, {...context(), aws: {region: 'eu-west-1'}})).toThrow(
      /^--region only apply to provider ec2; this nodeset's provider is local$/,
    )
  })
})

describe('the ec2 provider, from its settings', () => {
  const settings = 'provider = ec2\nregion = eu-west-1\nimage = id ami-0123456789abcdef0\nkey_name = ops'

  it("reaches nodes as the image's user with ssh_key, the node's own user first; host keys pinned", async () => {
    const {nodeset, plan} = read(`${settings}\nssh_user = ubuntu\nssh_key = keys/ops.pem`)
    const ctx = context()
    const provider = openProvider(nodeset, plan, ctx)
    expect(provider).toBeInstanceOf(Ec2Provider)
    expect(provider.kind).toBe('ec2')
    expect(ctx.keyAsked).toBe(0)
    expect(await provider.prepare()).toEqual({})
    // No port reported yet: ~/.ssh/config's Port for the node applies, else 22 (resolveTarget).
    expect(provider.sshTarget(node('app1.fx.test', {address: '203.0.113.7'}))).toEqual({
      host: '203.0.113.7',
      user: 'ubuntu',
      defaultUser: 'admin',
      nodeName: 'app1.fx.test',
      privateKeyPath: '/conf/keys/ops.pem',
    })
    expect(provider.sshTarget(node('app1.fx.test', {sshUser: 'admin', sshPort: 2222}))).toMatchObject({
      host: 'app1.fx.test',
      port: 2222,
      user: 'admin',
    })
    expect(provider.hostKeyPolicy()).toEqual({mode: 'pinned', store: ctx.hostKeys})
  })

  it("leaves the user to ~/.ssh/config without ssh_user, else Debian images' admin", () => {
    const {nodeset, plan} = read(settings)
    const target = openProvider(nodeset, plan, context()).sshTarget(node('db.fx.test', {address: '10.0.0.9'}))
    expect(target.user).toBeUndefined()
    expect(target.defaultUser).toBe('admin')
  })

  it('refuses settings EC2 would refuse, each at its line', () => {
    expect(problems('provider = ec2\nimage = id ami-xyz\nsubnet = sn-1')).toEqual([
      '/conf/main.conf:6: image id "ami-xyz" is not an AMI id (ami- and 8 or 17 hex digits)\n' +
        '  hint: copy the id from "aws ec2 describe-images", or write "image = name PATTERN"',
      '/conf/main.conf:7: subnet "sn-1" is not a subnet id (subnet- and 8 or 17 hex digits)\n' +
        '  hint: find the ids with "aws ec2 describe-subnets"',
    ])
  })

  it('refuses ignored keys and a role size EC2 has no type for, with the other problems and no AWS call', () => {
    const {nodeset, plan} = read(
      'provider = ec2\nimage = name debian-12-amd64-*\nusername = ops\nsubnet = subnet-xyz\nhosts = a=10.0.0.1',
      '[appserver]\nsize = id 1\n',
    )
    expect(checkProviderSettings(nodeset, plan).map((d) => [d.source?.line, d.message])).toEqual([
      [7, 'the ec2 provider does not use username'],
      [9, 'hosts is a key of the static provider: the ec2 provider does not read it'],
      [8, 'subnet "subnet-xyz" is not a subnet id (subnet- and 8 or 17 hex digits)'],
      [11, 'size "id 1" is not an EC2 instance type'],
    ])
    expect(() => openProvider(nodeset, plan, context())).toThrow(DiagnosticsError)
    expect(ec2Mock.calls()).toHaveLength(0)
  })

  it('asks for an image at the [provider] line when the settings have none', () => {
    const {nodeset, plan} = read('provider = ec2\nregion = eu-west-1\nimage = id ami-0123456789abcdef0')
    delete nodeset.provider.settings.image
    expect(checkProviderSettings(nodeset, plan).map(formatDiagnostic)).toEqual([
      '/conf/main.conf:4: the ec2 provider needs an image\n' +
        '  hint: add "image = name debian-12-amd64-*" (Debian\'s own images) or "image = id ami-…"',
    ])
  })

  it('lets --region win over [provider] region, and refuses a malformed one, exit code 2', async () => {
    const {nodeset, plan} = read(settings)
    ec2Mock.on(DescribeImagesCommand).resolves({Images: []})
    const provider = openProvider(nodeset, plan, {...context(), aws: {region: 'eu-central-1', profile: 'ops'}})
    const request = {deployment: 'fx', name: 'app1.fx.test', role: 'appserver', index: 1, userData: '#!/bin/sh\n'}
    await expect(provider.create([request])).rejects.toThrow(/does not exist in region eu-central-1/)
    expect(ec2Mock.commandCalls(RunInstancesCommand)).toHaveLength(0)
    const bad = (() => {
      try {
        openProvider(nodeset, plan, {...context(), aws: {region: 'eu-central-1b'}})
      } catch (error) {
        return error
      }
    })() as UserError
    expect(bad).toBeInstanceOf(UserError)
    expect([bad.exitCode, bad.message]).toEqual([
      2,
      '--region: region "eu-central-1b" is an availability zone, not a region (write region = eu-central-1; the zone follows from the subnet)',
    ])
  })

  it('warns that EC2 nodes cannot reach an embedded config server, and not with config_server = URL', () => {
    expect(providerWarnings(read(settings).nodeset).map(formatDiagnostic)).toEqual([
      '/conf/main.conf:5: EC2 nodes cannot reach a config server embedded in the command on your machine: create-node and up will refuse\n' +
        '  hint: run "nodeset config-server" on a host the nodes reach, and set [general] config_server = URL',
    ])
    const standalone = read(settings, undefined, 'config_server = https://config.example.com:8443\n').nodeset
    expect(providerWarnings(standalone)).toEqual([])
    expect(providerWarnings(read('provider = local').nodeset)).toEqual([])
  })
})

describe('the static provider, from its settings', () => {
  const hosts = 'provider = static\nhosts = app1.fx.test=203.0.113.10:2222 mysql.fx.test=db-box\nssh_user = deploy'

  it('reaches each server at its listed address with ssh_user; host keys from known_hosts, or on first use', () => {
    const {nodeset, plan} = read(hosts)
    expect(checkProviderSettings(nodeset, plan)).toEqual([])
    const ctx = context({trustOnFirstUse: true})
    const provider = openProvider(nodeset, plan, ctx)
    expect(provider).toBeInstanceOf(StaticProvider)
    expect(provider.kind).toBe('static')
    expect(ctx.keyAsked).toBe(0)
    expect(provider.sshTarget(node('app1.fx.test', {address: '198.51.100.1'}))).toEqual({
      nodeName: 'app1.fx.test',
      host: '203.0.113.10',
      port: 2222,
      user: 'deploy',
      privateKeyPath: undefined,
    })
    expect(provider.sshTarget(node('mysql.fx.test'))).toMatchObject({host: 'db-box', port: undefined})
    // A recorded node no longer listed is still reached where it was, to remove it.
    expect(provider.sshTarget(node('old.fx.test', {address: '198.51.100.9', sshPort: 22}))).toMatchObject({
      host: '198.51.100.9',
      port: 22,
    })
    expect(provider.hostKeyPolicy()).toEqual({
      mode: 'static',
      store: ctx.hostKeys,
      knownHostsPaths: undefined,
      trustOnFirstUse: true,
    })
    const {nodeset: again, plan: planAgain} = read(hosts)
    expect(openProvider(again, planAgain, context()).hostKeyPolicy()).toMatchObject({trustOnFirstUse: false})
  })

  it('refuses username, secret and keys of other providers, saying what to write instead', () => {
    expect(problems(`${hosts}\nusername = deploy\nsecret = pw-value\nregion = eu-west-1`)).toEqual([
      '/conf/main.conf:8: the static provider does not use username\n' +
        '  hint: write "ssh_user = NAME": static servers are logged in to over SSH',
      '/conf/main.conf:9: the static provider does not use secret\n' +
        '  hint: remove secret: static servers are logged in to with an SSH key; name its file with "ssh_key = PATH", or use your ssh-agent',
      '/conf/main.conf:10: region is a key of the ec2 provider: the static provider does not read it\n' +
        '  hint: remove it; the static provider reads hosts, ssh_user, ssh_key',
    ])
  })

  it('asks for hosts at the [provider] line when the settings have none, and checks the rest without a plan', () => {
    const {nodeset, plan} = read('provider = static\nhosts = app1.fx.test=10.0.0.1\nssh_user = deploy')
    delete nodeset.provider.settings.hosts
    expect(checkProviderSettings(nodeset, plan).map(formatDiagnostic)).toEqual([
      '/conf/main.conf:4: the static provider needs hosts\n' +
        '  hint: add "hosts = app1.example.com=203.0.113.10 …", one name=address per node',
    ])
    // Without a plan, hosts are parsed but not matched to nodes.
    expect(checkProviderSettings(read('provider = static\nhosts = app1.fx.test=10.0.0.1').nodeset)).toEqual([])
  })

  it('refuses hosts that miss a planned node, or that do not parse, at the hosts line', () => {
    expect(problems('provider = static\nhosts = app1.fx.test=203.0.113.10')).toEqual([
      '/conf/main.conf:6: [provider] hosts does not list mysql.fx.test\n  hint: add mysql.fx.test=ADDRESS',
    ])
    expect(problems('provider = static\nhosts = app1.fx.test=10.0.0.1:99999')).toEqual([
      expect.stringMatching(/^\/conf\/main\.conf:6: hosts entry "app1\.fx\.test=10\.0\.0\.1:99999" has port 99999/),
    ])
  })
})
