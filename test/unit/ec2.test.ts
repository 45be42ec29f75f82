import {
  CreateTagsCommand,
  DescribeImagesCommand,
  DescribeInstanceTypesCommand,
  DescribeInstancesCommand,
  EC2Client,
  EC2ServiceException,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type DescribeInstancesCommandInput,
  type Image,
  type Instance,
  type InstanceTypeInfo,
  type RunInstancesCommandInput,
} from '@aws-sdk/client-ec2'
import {mockClient} from 'aws-sdk-client-mock'
import fc from 'fast-check'
import {afterAll, beforeEach, describe, expect, it} from 'vitest'

import {DiagnosticsError} from '../../src/core/diagnostics.js'
import {
  clientToken,
  Ec2Error,
  Ec2Provider,
  explainEc2Error,
  type Ec2ProviderOptions,
  USER_DATA_LIMIT,
} from '../../src/providers/ec2.js'
import {ec2Settings} from '../../src/providers/ec2-settings.js'
import type {NodeRecord, NodeRequest} from '../../src/providers/provider.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'

const ec2Mock = mockClient(EC2Client)
const FAST = {minDelay: 0.01, maxDelay: 0.02, maxWaitTime: 5}
const AMI = 'ami-0123456789abcdef0'
const SUBNET = 'subnet-0abc1234'
const GROUPS = ['sg-0123abcd', 'sg-0456cdef']
/** What launches send unless told otherwise: IMDSv2 only, one hop; the root volume encrypted and deleted with the node. */
const METADATA = {HttpEndpoint: 'enabled', HttpTokens: 'required', HttpPutResponseHopLimit: 1}
const ROOT = [{DeviceName: '/dev/xvda', Ebs: {Encrypted: true, DeleteOnTermination: true}}]

/** An EBS-backed image as DescribeImages shows it (Debian's: root /dev/xvda, an 8 GB snapshot). */
function image(id: string, extra: Partial<Image> = {}): Image {
  return {
    ImageId: id,
    RootDeviceName: '/dev/xvda',
    RootDeviceType: 'ebs',
    BlockDeviceMappings: [{DeviceName: '/dev/xvda', Ebs: {SnapshotId: 'snap-0123456789abcdef0', VolumeSize: 8}}],
    ...extra,
  }
}

/** What EC2 "has": instances by id, so the waiter and DescribeInstances see what RunInstances made. */
let fleet: Map<string, Instance>
let nextId: number

function provider(options: Partial<Ec2ProviderOptions> = {}): Ec2Provider {
  return new Ec2Provider({
    deployment: 'foobar',
    hostKeys: new HostKeyStore('/nonexistent/known_hosts'),
    image: {kind: 'id', value: AMI},
    client: new EC2Client({region: 'eu-west-1'}),
    waiter: FAST,
    ...options,
  })
}

function request(
  name: string,
  role: string,
  index: number,
  userData = `#!/bin/sh\n# node ${name}\nTOKEN=secret-token-${name}\n`,
): NodeRequest {
  return {deployment: 'foobar', name, role, index, userData}
}

function awsError(code: string, message = `${code} message`, attempts = 1): EC2ServiceException {
  return new EC2ServiceException({name: code, $fault: 'client', $metadata: {attempts}, message})
}

/** RunInstances as EC2 answers it: MaxCount pending instances with AmiLaunchIndex 0..n-1, listed in reverse. */
function launchInto(input: RunInstancesCommandInput, state = 'pending'): {Instances: Instance[]} {
  const made: Instance[] = []
  for (let i = 0; i < input.MaxCount!; i++) {
    const id = `i-${(nextId++).toString(16).padStart(17, '0')}`
    const tags = input.TagSpecifications!.find((t) => t.ResourceType === 'instance')!.Tags
    const instance = {
      InstanceId: id,
      AmiLaunchIndex: i,
      State: {Name: state},
      Tags: tags,
      PrivateIpAddress: `10.0.0.${nextId}`,
    } as Instance
    fleet.set(id, instance)
    made.push(instance)
  }
  return {Instances: made.reverse()}
}

/** DescribeInstances by id: everything in the fleet becomes running with a public address. */
function describeRunning(input: DescribeInstancesCommandInput) {
  const instances = (input.InstanceIds ?? []).map((id) => {
    const instance = fleet.get(id)!
    instance.State = {Name: 'running'}
    instance.PublicIpAddress ??= `203.0.113.${fleet.size}`
    return {...instance}
  })
  return {Reservations: [{Instances: instances}]}
}

function runInputs(): RunInstancesCommandInput[] {
  return ec2Mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input)
}

beforeEach(() => {
  ec2Mock.reset()
  fleet = new Map()
  nextId = 1
  ec2Mock.on(RunInstancesCommand).callsFake((input) => launchInto(input))
  ec2Mock.on(DescribeInstancesCommand).callsFake(describeRunning)
  ec2Mock.on(CreateTagsCommand).resolves({})
  ec2Mock
    .on(DescribeImagesCommand)
    .callsFake((input) => ({Images: (input.ImageIds ?? []).map((id: string) => image(id))}))
})

afterAll(() => ec2Mock.restore())

describe('create', () => {
  it('launches a node with its name, tags, user data, key, subnet and groups, and reports its addresses', async () => {
    const p = provider({
      keyName: 'ops',
      subnetId: SUBNET,
      securityGroupIds: GROUPS,
      sshUser: 'admin',
      size: {kind: 'id', value: 't3.small'},
    })
    const req = request('app1.foobar.com', 'appserver', 1)
    const records = await p.create([req])

    const tags = [
      {Key: 'Name', Value: 'app1.foobar.com'},
      {Key: 'nodeset:deployment', Value: 'foobar'},
      {Key: 'nodeset:role', Value: 'appserver'},
      {Key: 'nodeset:index', Value: '1'},
    ]
    expect(runInputs()).toEqual([
      {
        ImageId: AMI,
        InstanceType: 't3.small',
        MinCount: 1,
        MaxCount: 1,
        ClientToken: clientToken('foobar', 'appserver', ['app1.foobar.com']),
        UserData: Buffer.from(req.userData, 'utf8').toString('base64'),
        KeyName: 'ops',
        SubnetId: SUBNET,
        SecurityGroupIds: GROUPS,
        MetadataOptions: METADATA,
        BlockDeviceMappings: ROOT,
        TagSpecifications: [
          {ResourceType: 'instance', Tags: tags},
          {ResourceType: 'volume', Tags: tags},
        ],
      },
    ])
    expect(Buffer.from(runInputs()[0].UserData!, 'base64').toString('utf8')).toBe(req.userData)
    // A single-node launch is fully tagged by RunInstances: no CreateTags window.
    expect(ec2Mock.commandCalls(CreateTagsCommand)).toHaveLength(0)
    const [id] = [...fleet.keys()]
    expect(records).toEqual([
      {
        deployment: 'foobar',
        name: 'app1.foobar.com',
        role: 'appserver',
        index: 1,
        id,
        address: fleet.get(id)!.PublicIpAddress,
        privateAddress: fleet.get(id)!.PrivateIpAddress,
        state: 'running',
        sshUser: 'admin',
      },
    ])
  })

  it('leaves out key, subnet and groups when not set, and defaults the size to t3.micro', async () => {
    await provider().create([request('db1', 'service:mysql', 1)])
    const input = runInputs()[0]
    expect(input.InstanceType).toBe('t3.micro')
    expect(Object.keys(input)).not.toEqual(expect.arrayContaining(['KeyName']))
    expect('SubnetId' in input || 'SecurityGroupIds' in input || 'KeyName' in input).toBe(false)
  })

  it('launches a role whose nodes share their user data in one RunInstances, then names each instance by launch index', async () => {
    const shared = '#!/bin/sh\necho role-level boot\n'
    const apps = [3, 1, 2].map((n) => request(`app${n}.foobar.com`, 'appserver', n, shared))
    const records = await provider().create([...apps, request('balancer.foobar.com', 'balancer', 1, shared)])

    const inputs = runInputs()
    expect(inputs.map((i) => [i.MinCount, i.MaxCount, i.TagSpecifications![0].Tags])).toEqual([
      [
        3,
        3,
        [
          {Key: 'nodeset:deployment', Value: 'foobar'},
          {Key: 'nodeset:role', Value: 'appserver'},
        ],
      ],
      [
        1,
        1,
        [
          {Key: 'Name', Value: 'balancer.foobar.com'},
          {Key: 'nodeset:deployment', Value: 'foobar'},
          {Key: 'nodeset:role', Value: 'balancer'},
          {Key: 'nodeset:index', Value: '1'},
        ],
      ],
    ])
    expect(inputs[0].ClientToken).toBe(
      clientToken('foobar', 'appserver', ['app1.foobar.com', 'app2.foobar.com', 'app3.foobar.com']),
    )
    // RunInstances answered in reverse launch order: index 0 must still be app1.
    const byLaunchIndex = [...fleet.values()]
      .filter((i) => i.Tags!.some((t) => t.Value === 'appserver'))
      .sort((a, b) => a.AmiLaunchIndex! - b.AmiLaunchIndex!)
    const tagCalls = ec2Mock.commandCalls(CreateTagsCommand).map((c) => c.args[0].input)
    expect(tagCalls.sort((a, b) => a.Resources![0].localeCompare(b.Resources![0]))).toEqual(
      byLaunchIndex.map((instance, i) => ({
        Resources: [instance.InstanceId],
        Tags: [
          {Key: 'Name', Value: `app${i + 1}.foobar.com`},
          {Key: 'nodeset:index', Value: String(i + 1)},
        ],
      })),
    )
    expect(records.map((r) => [r.name, r.id])).toEqual([
      ['app1.foobar.com', byLaunchIndex[0].InstanceId],
      ['app2.foobar.com', byLaunchIndex[1].InstanceId],
      ['app3.foobar.com', byLaunchIndex[2].InstanceId],
      ['balancer.foobar.com', expect.stringMatching(/^i-/)],
    ])
  })

  it('launches nodes with their own user data (identity and token) one per RunInstances call', async () => {
    const apps = [1, 2, 3].map((n) => request(`app${n}`, 'appserver', n))
    await provider().create(apps)
    const inputs = runInputs()
    expect(inputs.map((i) => [i.MinCount, i.MaxCount, Buffer.from(i.UserData!, 'base64').toString()])).toEqual(
      apps.map((a) => [1, 1, a.userData]),
    )
    expect(new Set(inputs.map((i) => i.ClientToken)).size).toBe(3)
  })

  it('retries a name tag while EC2 does not know the new instance yet', async () => {
    ec2Mock.on(CreateTagsCommand).rejectsOnce(awsError('InvalidInstanceID.NotFound')).resolves({})
    const shared = 'same'
    await provider().create([request('a1', 'appserver', 1, shared), request('a2', 'appserver', 2, shared)])
    const calls = ec2Mock.commandCalls(CreateTagsCommand).map((c) => c.args[0].input.Tags![0].Value)
    // Whichever call went first met the NotFound and was sent again.
    expect(calls).toHaveLength(3)
    expect(new Set(calls)).toEqual(new Set(['a1', 'a2']))
  })

  it('sends the same ClientToken when a create is retried, so EC2 returns the first launch instead of a second', async () => {
    const replies = new Map<string, {Instances: Instance[]}>()
    ec2Mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
      // EC2's idempotency: the same token gets the same reservation back.
      if (!replies.has(input.ClientToken!)) replies.set(input.ClientToken!, launchInto(input))
      return replies.get(input.ClientToken!)
    })
    const nodes = [request('app1', 'appserver', 1), request('app2', 'appserver', 2)]
    const first = await provider().create(nodes)
    const retried = await provider().create([...nodes].reverse())
    const [a, b] = [
      runInputs()
        .slice(0, 2)
        .map((i) => i.ClientToken)
        .sort(),
      runInputs()
        .slice(2)
        .map((i) => i.ClientToken)
        .sort(),
    ]
    expect(b).toEqual(a)
    expect(fleet.size).toBe(2)
    expect(retried.map((r) => r.id).sort()).toEqual(first.map((r) => r.id).sort())
  })

  it('moves to the next ClientToken when the token only brings back terminated instances (deleted, then created again)', async () => {
    const gone = clientToken('foobar', 'appserver', ['app1'], 0)
    ec2Mock
      .on(RunInstancesCommand)
      .callsFake((input: RunInstancesCommandInput) =>
        launchInto(input, input.ClientToken === gone ? 'terminated' : 'pending'),
      )
    const [record] = await provider().create([request('app1', 'appserver', 1)])
    expect(runInputs().map((i) => i.ClientToken)).toEqual([gone, clientToken('foobar', 'appserver', ['app1'], 1)])
    expect(record.state).toBe('running')
    expect(fleet.get(record.id)!.AmiLaunchIndex).toBe(0)
  })

  it('moves to the next ClientToken on a parameter mismatch only when no live instance holds the old one', async () => {
    const first = clientToken('foobar', 'appserver', ['app1'], 0)
    ec2Mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
      if (input.ClientToken === first) throw awsError('IdempotentParameterMismatch')
      return launchInto(input)
    })
    ec2Mock
      .on(DescribeInstancesCommand, {
        Filters: [
          {Name: 'client-token', Values: [first]},
          {Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped']},
        ],
      })
      .resolves({Reservations: []})
    await provider().create([request('app1', 'appserver', 1)])
    expect(runInputs().map((i) => i.ClientToken)).toEqual([first, clientToken('foobar', 'appserver', ['app1'], 1)])
  })

  it('refuses a parameter mismatch while the first launch is alive, naming the nodes', async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError('IdempotentParameterMismatch'))
    ec2Mock
      .on(DescribeInstancesCommand)
      .resolves({Reservations: [{Instances: [{InstanceId: 'i-0aaa', State: {Name: 'running'}}]}]})
    const error = await provider()
      .create([request('app1', 'appserver', 1)])
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Ec2Error)
    expect((error as Ec2Error).code).toBe('IdempotentParameterMismatch')
    expect((error as Error).message).toMatch(/nodes app1 were already launched by an earlier run with other settings/)
    expect(runInputs()).toHaveLength(1)
  })

  it('refuses user data over 16 KB before any API call, naming the node; 16 KB exactly is fine', async () => {
    const big = request('app2.foobar.com', 'appserver', 2, 'é'.repeat(USER_DATA_LIMIT / 2 + 1))
    const error = await provider()
      .create([request('app1.foobar.com', 'appserver', 1), big])
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Ec2Error)
    expect((error as Error).message).toMatch(
      /user data of node app2\.foobar\.com is 16386 bytes; EC2 takes at most 16384/,
    )
    expect(ec2Mock.calls()).toHaveLength(0)

    await provider().create([request('app3', 'appserver', 3, 'x'.repeat(USER_DATA_LIMIT))])
    expect(runInputs()).toHaveLength(1)
  })

  it('never puts the user data (which carries the token) in an error', async () => {
    const req = request('app1', 'appserver', 1, '#!/bin/sh\nNODESET_TOKEN=s3cr3t-t0ken-value\n')
    const base64 = Buffer.from(req.userData).toString('base64')
    ec2Mock
      .on(RunInstancesCommand)
      .rejects(awsError('InvalidParameterValue', `bad UserData ${base64} / ${req.userData}`))
    const error = (await provider()
      .create([req])
      .catch((e: unknown) => e)) as Error
    expect(error.message).toMatch(/^EC2 RunInstances failed \(InvalidParameterValue\): bad UserData \*{8} \/ \*{8}$/)
    expect(error.message).not.toContain('s3cr3t')
  })

  it('says which nodes were launched before a later launch failed', async () => {
    ec2Mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
      if (input.InstanceType === 'c7i.48xlarge') throw awsError('InsufficientInstanceCapacity')
      return launchInto(input)
    })
    const big = {...request('db1', 'service:db', 1), size: {kind: 'id', value: 'c7i.48xlarge'} as const}
    const error = (await provider()
      .create([request('app1', 'appserver', 1), big])
      .catch((e: unknown) => e)) as Error
    expect(error.message).toMatch(
      /no spare capacity for c7i\.48xlarge.*launched before the failure, and reused by the next run: app1\)$/,
    )
  })
})

describe('launch settings', () => {
  it('sends the instance profile, root volume, public address and metadata options the options ask for', async () => {
    ec2Mock.on(DescribeImagesCommand).resolves({Images: [image(AMI)]})
    const req = request('app1.foobar.com', 'appserver', 1)
    await provider({
      subnetId: SUBNET,
      securityGroupIds: GROUPS,
      iamInstanceProfile: 'nodeset-app',
      disk: {sizeGb: 20, type: 'gp3'},
      associatePublicIp: true,
      imds: 'optional',
      imdsHopLimit: 2,
    }).create([req])
    const tags = [
      {Key: 'Name', Value: 'app1.foobar.com'},
      {Key: 'nodeset:deployment', Value: 'foobar'},
      {Key: 'nodeset:role', Value: 'appserver'},
      {Key: 'nodeset:index', Value: '1'},
    ]
    expect(runInputs()).toEqual([
      {
        ImageId: AMI,
        InstanceType: 't3.micro',
        MinCount: 1,
        MaxCount: 1,
        ClientToken: clientToken('foobar', 'appserver', ['app1.foobar.com']),
        UserData: Buffer.from(req.userData, 'utf8').toString('base64'),
        // A public address is asked for on the primary interface, which then carries the subnet and groups.
        NetworkInterfaces: [
          {DeviceIndex: 0, AssociatePublicIpAddress: true, DeleteOnTermination: true, SubnetId: SUBNET, Groups: GROUPS},
        ],
        IamInstanceProfile: {Name: 'nodeset-app'},
        MetadataOptions: {HttpEndpoint: 'enabled', HttpTokens: 'optional', HttpPutResponseHopLimit: 2},
        BlockDeviceMappings: [
          {
            DeviceName: '/dev/xvda',
            Ebs: {VolumeSize: 20, VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true},
          },
        ],
        TagSpecifications: [
          {ResourceType: 'instance', Tags: tags},
          {ResourceType: 'volume', Tags: tags},
        ],
      },
    ])
  })

  it('passes an instance profile ARN as an ARN, turns metadata off, and keeps encryption as the image has it', async () => {
    const arn = 'arn:aws:iam::123456789012:instance-profile/ops/nodeset-app'
    await provider({iamInstanceProfile: arn, imds: 'disabled', disk: {sizeGb: 30, encrypted: false}}).create([
      request('a', 'appserver', 1),
    ])
    const input = runInputs()[0]
    expect([input.IamInstanceProfile, input.MetadataOptions, input.BlockDeviceMappings]).toEqual([
      {Arn: arn},
      {HttpEndpoint: 'disabled'},
      [{DeviceName: '/dev/xvda', Ebs: {VolumeSize: 30, DeleteOnTermination: true}}],
    ])
  })

  it('asks for no public address with associate_public_ip = false, even without a subnet', async () => {
    await provider({associatePublicIp: false}).create([request('a', 'appserver', 1)])
    const input = runInputs()[0]
    expect(input.NetworkInterfaces).toEqual([
      {DeviceIndex: 0, AssociatePublicIpAddress: false, DeleteOnTermination: true},
    ])
    expect('SubnetId' in input || 'SecurityGroupIds' in input).toBe(false)
  })

  it("refuses, before launching, a disk smaller than the image's root snapshot and a disk on an instance-store image", async () => {
    await expect(provider({disk: {sizeGb: 4}}).create([request('a', 'appserver', 1)])).rejects.toThrow(
      /disk = 4GB is smaller than the root snapshot of image ami-0123456789abcdef0 \(8 GB\): write disk = 8GB or more/,
    )
    ec2Mock.on(DescribeImagesCommand).resolves({Images: [image(AMI, {RootDeviceType: 'instance-store'})]})
    await expect(provider().create([request('a', 'appserver', 1)])).rejects.toThrow(
      /image ami-0123456789abcdef0 has no EBS root volume.*"disk = unencrypted"/,
    )
    expect(runInputs()).toHaveLength(0)
  })

  it('makes its EC2 client on the first call to AWS, not when it is built', async () => {
    let made = 0
    const p = provider({
      client: () => {
        made++
        return new EC2Client({region: 'eu-west-1'})
      },
    })
    expect(made).toBe(0)
    await p.list()
    await p.list()
    expect(made).toBe(1)
  })

  it('names iam:PassRole when RunInstances is refused with an instance profile', async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError('UnauthorizedOperation'))
    await expect(provider({iamInstanceProfile: 'app'}).create([request('a', 'appserver', 1)])).rejects.toThrow(
      /may not call ec2:RunInstances, or may not pass the role of instance profile app \(iam:PassRole\)/,
    )
  })
})

describe('waiting', () => {
  it('reports a node that never reaches running, with EC2 state reason', async () => {
    ec2Mock.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => ({
      Reservations: [
        {
          Instances: input.InstanceIds!.map((id) => ({
            ...fleet.get(id)!,
            State: {Name: 'terminated'},
            StateReason: {Code: 'Server.InternalError', Message: 'Server.InternalError: Internal error on launch'},
          })),
        },
      ],
    }))
    const error = (await provider()
      .create([request('app1', 'appserver', 1)])
      .catch((e: unknown) => e)) as Error
    expect(error.message).toMatch(
      /did not become running and never will: app1 \(i-\w+\) is terminated: Server\.InternalError: Internal error on launch/,
    )
  })

  it('gives up after the waiter time and says so', async () => {
    ec2Mock.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => ({
      Reservations: [{Instances: input.InstanceIds!.map((id) => fleet.get(id))}],
    }))
    const started = Date.now()
    const error = (await provider({waiter: {minDelay: 0.01, maxDelay: 0.02, maxWaitTime: 0.3}})
      .create([request('app1', 'appserver', 1)])
      .catch((e: unknown) => e)) as Error
    expect(Date.now() - started).toBeLessThan(3000)
    expect(error.message).toMatch(/did not become running within 0\.3 s: app1 \(i-\w+\) is pending/)
  })
})

describe('images and sizes', () => {
  it('picks the newest available image matching the name, from the given owners', async () => {
    ec2Mock.on(DescribeImagesCommand).resolves({
      Images: [
        image('ami-00000000000000001', {CreationDate: '2025-01-10T00:00:00.000Z'}),
        image('ami-00000000000000003', {CreationDate: '2025-06-01T00:00:00.000Z', RootDeviceName: '/dev/sda1'}),
        image('ami-00000000000000002', {CreationDate: '2025-03-15T00:00:00.000Z'}),
      ],
    })
    const p = provider({image: {kind: 'name', pattern: 'debian-12-amd64-*', owners: ['136693071363']}})
    await p.create([request('app1', 'appserver', 1)])
    await p.create([request('app2', 'appserver', 2)])
    expect(ec2Mock.commandCalls(DescribeImagesCommand).map((c) => c.args[0].input)).toEqual([
      {
        Owners: ['136693071363'],
        Filters: [
          {Name: 'name', Values: ['debian-12-amd64-*']},
          {Name: 'state', Values: ['available']},
        ],
      },
    ])
    expect(runInputs().map((i) => i.ImageId)).toEqual(['ami-00000000000000003', 'ami-00000000000000003'])
    // The root volume is the found image's own root device.
    expect(runInputs().map((i) => i.BlockDeviceMappings?.[0].DeviceName)).toEqual(['/dev/sda1', '/dev/sda1'])
  })

  it("searches only the account's own, Amazon's and Debian's images when no owners are given", async () => {
    ec2Mock
      .on(DescribeImagesCommand)
      .resolves({Images: [image('ami-00000000000000009', {CreationDate: '2025-01-01T00:00:00.000Z'})]})
    await provider({image: {kind: 'name', pattern: 'debian-12-amd64-*'}}).create([request('app1', 'appserver', 1)])
    expect(ec2Mock.commandCalls(DescribeImagesCommand)[0].args[0].input.Owners).toEqual([
      'self',
      'amazon',
      '136693071363',
    ])
  })

  it('fails with the pattern named when no image matches, before launching anything', async () => {
    ec2Mock.on(DescribeImagesCommand).resolves({Images: []})
    const error = (await provider({
      image: {kind: 'name', pattern: 'debain-12-*', owners: ['136693071363']},
      region: 'eu-west-1',
    })
      .create([request('a', 'appserver', 1)])
      .catch((e: unknown) => e)) as Error
    expect(error.message).toMatch(/no available image named "debain-12-\*" owned by 136693071363 in region eu-west-1/)
    expect(runInputs()).toHaveLength(0)
  })

  it('looks an AMI id up by id only for its root device, and not at all when the root volume is left as it is', async () => {
    await provider().create([request('a', 'appserver', 1)])
    expect(ec2Mock.commandCalls(DescribeImagesCommand).map((c) => c.args[0].input)).toEqual([{ImageIds: [AMI]}])
    expect(runInputs()[0].ImageId).toBe(AMI)
    ec2Mock.resetHistory()
    await provider({disk: {encrypted: false}}).create([request('b', 'appserver', 2)])
    expect(ec2Mock.commandCalls(DescribeImagesCommand)).toHaveLength(0)
    expect('BlockDeviceMappings' in runInputs()[0]).toBe(false)
  })

  it('says so when the AMI id does not exist in the region, before launching', async () => {
    ec2Mock.on(DescribeImagesCommand).resolves({Images: []})
    await expect(provider({region: 'eu-west-1'}).create([request('a', 'appserver', 1)])).rejects.toThrow(
      /image ami-0123456789abcdef0 does not exist in region eu-west-1\. AMI ids differ from region to region/,
    )
    expect(runInputs()).toHaveLength(0)
  })

  const TYPES: InstanceTypeInfo[][] = [
    [
      {InstanceType: 'm7i.large', MemoryInfo: {SizeInMiB: 8192}, VCpuInfo: {DefaultVCpus: 2}},
      {InstanceType: 't3.small', MemoryInfo: {SizeInMiB: 2048}, VCpuInfo: {DefaultVCpus: 2}},
      {InstanceType: 't3.micro', MemoryInfo: {SizeInMiB: 1024}, VCpuInfo: {DefaultVCpus: 2}},
    ],
    [
      {InstanceType: 'c7i.large', MemoryInfo: {SizeInMiB: 4096}, VCpuInfo: {DefaultVCpus: 2}},
      {InstanceType: 'r7i.large', MemoryInfo: {SizeInMiB: 16384}, VCpuInfo: {DefaultVCpus: 2}},
      {InstanceType: 't3.medium', MemoryInfo: {SizeInMiB: 4096}, VCpuInfo: {DefaultVCpus: 2}},
      {
        InstanceType: 'x9.weird' as InstanceTypeInfo['InstanceType'],
        MemoryInfo: {SizeInMiB: 2048},
        VCpuInfo: {DefaultVCpus: 8},
      },
    ],
  ]

  function mockTypePages(): DescribeInstancesCommandInput[] {
    const seen: DescribeInstancesCommandInput[] = []
    ec2Mock.on(DescribeInstanceTypesCommand).callsFake((input) => {
      seen.push(structuredClone(input))
      return input.NextToken ? {InstanceTypes: TYPES[1]} : {InstanceTypes: TYPES[0], NextToken: 'page-2'}
    })
    return seen
  }

  it('turns "ram" into the smallest current x86_64 type with that much memory, reading every page', async () => {
    const seen = mockTypePages()
    const p = provider()
    expect(await p.resolveSize({kind: 'ram', megabytes: 2048})).toBe('t3.small') // 2 vCPUs beat x9.weird's 8
    expect(await p.resolveSize({kind: 'ram', megabytes: 3000})).toBe('c7i.large') // 4 GiB, name breaks the tie
    expect(await p.resolveSize({kind: 'ram', megabytes: 10000})).toBe('r7i.large') // only on the second page
    expect(await p.resolveSize({kind: 'ram', megabytes: 256})).toBe('t3.micro')
    const filters = [
      {Name: 'current-generation', Values: ['true']},
      {Name: 'processor-info.supported-architecture', Values: ['x86_64']},
      {Name: 'bare-metal', Values: ['false']},
    ]
    expect(seen).toEqual([
      {Filters: filters, MaxResults: 100, NextToken: undefined},
      {Filters: filters, MaxResults: 100, NextToken: 'page-2'},
    ])
  })

  it('launches a node sized by ram with the type it found', async () => {
    mockTypePages()
    await provider({size: {kind: 'ram', megabytes: 4096}}).create([
      request('a', 'appserver', 1),
      {...request('b', 'balancer', 1), size: {kind: 'ram', megabytes: 256}},
    ])
    expect(runInputs().map((i) => [i.TagSpecifications![0].Tags![0].Value, i.InstanceType])).toEqual([
      ['a', 'c7i.large'],
      ['b', 't3.micro'],
    ])
  })

  it('says so when no type has enough memory', async () => {
    mockTypePages()
    await expect(provider().resolveSize({kind: 'ram', megabytes: 32768})).rejects.toThrow(
      /no current-generation x86_64 instance type has 32768 MB of memory or more/,
    )
  })
})

describe('list', () => {
  it("reads every page of the deployment's instances and maps them to nodes", async () => {
    const seen: DescribeInstancesCommandInput[] = []
    const tags = (name: string, role: string, index: number) => [
      {Key: 'Name', Value: name},
      {Key: 'nodeset:deployment', Value: 'foobar'},
      {Key: 'nodeset:role', Value: role},
      {Key: 'nodeset:index', Value: String(index)},
    ]
    ec2Mock.on(DescribeInstancesCommand).callsFake((input) => {
      seen.push(structuredClone(input))
      if (!input.NextToken) {
        return {
          NextToken: 'next-1',
          Reservations: [
            {
              Instances: [
                {
                  InstanceId: 'i-02',
                  State: {Name: 'running'},
                  PublicIpAddress: '203.0.113.2',
                  PrivateIpAddress: '10.0.0.2',
                  Tags: tags('app2', 'appserver', 2),
                },
              ],
            },
          ],
        }
      }
      return {
        Reservations: [
          {
            Instances: [
              {
                InstanceId: 'i-01',
                State: {Name: 'stopping'},
                PrivateIpAddress: '10.0.0.1',
                Tags: tags('app1', 'appserver', 1),
              },
            ],
          },
          {
            Instances: [
              {
                InstanceId: 'i-09',
                State: {Name: 'pending'},
                Tags: [
                  {Key: 'nodeset:deployment', Value: 'foobar'},
                  {Key: 'nodeset:role', Value: 'appserver'},
                ],
              },
            ],
          },
        ],
      }
    })
    const nodes = await provider({sshUser: 'admin'}).list()
    const filters = [
      {Name: 'tag:nodeset:deployment', Values: ['foobar']},
      {Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped', 'shutting-down']},
    ]
    expect(seen).toEqual([
      {Filters: filters, MaxResults: 1000, NextToken: undefined},
      {Filters: filters, MaxResults: 1000, NextToken: 'next-1'},
    ])
    const base = {deployment: 'foobar', role: 'appserver', sshUser: 'admin'}
    expect(nodes).toEqual<NodeRecord[]>([
      // An instance of a multi-node launch that was never named shows by its id.
      {...base, name: 'i-09', index: 0, id: 'i-09', address: undefined, privateAddress: undefined, state: 'pending'},
      {...base, name: 'app1', index: 1, id: 'i-01', address: '10.0.0.1', privateAddress: '10.0.0.1', state: 'stopped'},
      {
        ...base,
        name: 'app2',
        index: 2,
        id: 'i-02',
        address: '203.0.113.2',
        privateAddress: '10.0.0.2',
        state: 'running',
      },
    ])
  })
})

describe('destroy', () => {
  it('terminates in chunks of at most 1000 and waits until they are gone', async () => {
    const nodes: NodeRecord[] = Array.from({length: 1500}, (_, i) => ({
      deployment: 'foobar',
      name: `n${i}`,
      role: 'appserver',
      index: i + 1,
      id: `i-${i}`,
      state: 'running',
    }))
    ec2Mock.on(TerminateInstancesCommand).resolves({})
    ec2Mock.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => ({
      Reservations: [{Instances: input.InstanceIds!.map((id) => ({InstanceId: id, State: {Name: 'terminated'}}))}],
    }))
    await provider().destroy(nodes)
    const ids = nodes.map((n) => n.id)
    expect(ec2Mock.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input)).toEqual([
      {InstanceIds: ids.slice(0, 1000)},
      {InstanceIds: ids.slice(1000)},
    ])
    expect(ec2Mock.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input)).toEqual([
      {InstanceIds: ids.slice(0, 1000)},
      {InstanceIds: ids.slice(1000)},
    ])
  })

  it('does nothing for no nodes', async () => {
    await provider().destroy([])
    expect(ec2Mock.calls()).toHaveLength(0)
  })

  it('reports a node that does not terminate', async () => {
    ec2Mock.on(TerminateInstancesCommand).resolves({})
    ec2Mock
      .on(DescribeInstancesCommand)
      .resolves({Reservations: [{Instances: [{InstanceId: 'i-7', State: {Name: 'shutting-down'}}]}]})
    const node: NodeRecord = {
      deployment: 'foobar',
      name: 'db1',
      role: 'service:db',
      index: 1,
      id: 'i-7',
      state: 'running',
    }
    await expect(
      provider({waiter: {minDelay: 0.01, maxDelay: 0.02, maxWaitTime: 0.2}}).destroy([node]),
    ).rejects.toThrow(/did not become terminated within 0\.2 s: db1 \(i-7\) is shutting-down/)
  })
})

describe('ClientToken', () => {
  const names = fc.uniqueArray(fc.string({minLength: 1, maxLength: 80}), {minLength: 1, maxLength: 20})

  it('is at most 64 printable ASCII characters, whatever the names', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), names, fc.nat(30), (d, r, n, g) =>
        /^[\x21-\x7e]{1,64}$/.test(clientToken(d, r, n, g)),
      ),
    )
  })

  it('does not depend on the order of the names, and differs for another batch or generation', () => {
    fc.assert(
      fc.property(names, fc.string({minLength: 1}), (n, extra) => {
        const token = clientToken('foobar', 'appserver', n)
        expect(clientToken('foobar', 'appserver', [...n].reverse())).toBe(token)
        if (!n.includes(extra)) expect(clientToken('foobar', 'appserver', [...n, extra])).not.toBe(token)
        expect(clientToken('foobar', 'balancer', n)).not.toBe(token)
        expect(clientToken('other', 'appserver', n)).not.toBe(token)
        expect(clientToken('foobar', 'appserver', n, 1)).not.toBe(token)
      }),
    )
  })
})

describe('error mapping', () => {
  const context = {
    operation: 'RunInstances',
    region: 'eu-west-1',
    image: AMI,
    instanceType: 't3.small',
    keyName: 'ops',
    subnetId: SUBNET,
    securityGroupIds: [GROUPS[0]],
    nodes: ['app1'],
  }
  const cases: [string, RegExp][] = [
    ['UnauthorizedOperation', /may not call ec2:RunInstances\. Grant it to the IAM user or role/],
    [
      'InvalidAMIID.NotFound',
      /image ami-0123456789abcdef0 does not exist in region eu-west-1\. AMI ids differ from region to region/,
    ],
    ['InvalidAMIID.Malformed', /image "ami-0123456789abcdef0" is not an AMI id/],
    [
      'InsufficientInstanceCapacity',
      /no spare capacity for t3\.small .*Try again in a few minutes, choose another size, or a subnet in another availability zone/,
    ],
    ['VcpuLimitExceeded', /vCPU quota for t3\.small's family is used up\. Ask for a higher .* quota in Service Quotas/],
    ['InvalidKeyPair.NotFound', /key pair "ops" does not exist in region eu-west-1\. Import your public key/],
    [
      'InvalidSubnetID.NotFound',
      /subnet subnet-0abc1234 does not exist in region eu-west-1\. Fix subnet in \[provider\]/,
    ],
    ['InvalidGroup.NotFound', /security group sg-0123abcd was not found in the subnet's VPC\. Fix security_groups/],
  ]

  it.each(cases)('%s says what to do', (code, expected) => {
    const error = explainEc2Error(awsError(code), context)
    expect(error).toBeInstanceOf(Ec2Error)
    expect(error.code).toBe(code)
    expect(error.message).toMatch(new RegExp(`^EC2 RunInstances failed \\(${code.replace('.', '\\.')}\\): `))
    expect(error.message).toMatch(expected)
    expect((error as Error & {cause?: unknown}).cause).toBeInstanceOf(EC2ServiceException)
  })

  it('says throttling outlasted the SDK retries', () => {
    expect(explainEc2Error(awsError('RequestLimitExceeded', 'Request limit exceeded.', 3), context).message).toMatch(
      /throttled the requests even after 3 attempts\. Wait a minute and run the command again/,
    )
  })

  it('explains missing credentials and region from the SDK chain', () => {
    const noCredentials = Object.assign(new Error('Could not load credentials from any providers'), {
      name: 'CredentialsProviderError',
    })
    expect(explainEc2Error(noCredentials).message).toMatch(
      /no AWS credentials found\. Set "profile = NAME" in \[provider\]/,
    )
    expect(explainEc2Error(new Error('Region is missing')).message).toMatch(
      /no AWS region is set\. Set "region = eu-west-1"/,
    )
  })

  it('keeps EC2 message for codes it does not know', () => {
    expect(
      explainEc2Error(awsError('InvalidParameterValue', "Invalid value 't3.smal' for InstanceType."), context).message,
    ).toBe("EC2 RunInstances failed (InvalidParameterValue): Invalid value 't3.smal' for InstanceType.")
  })

  it('maps a refusal met by the provider, naming the operation', async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError('InvalidKeyPair.NotFound'))
    await expect(
      provider({keyName: 'laptop', region: 'us-east-2'}).create([request('a', 'appserver', 1)]),
    ).rejects.toThrow(
      /EC2 RunInstances failed \(InvalidKeyPair\.NotFound\): key pair "laptop" does not exist in region us-east-2/,
    )
    ec2Mock.on(DescribeInstancesCommand).rejects(awsError('UnauthorizedOperation'))
    await expect(provider().list()).rejects.toThrow(/may not call ec2:DescribeInstances/)
    ec2Mock.on(TerminateInstancesCommand).rejects(awsError('UnauthorizedOperation'))
    await expect(
      provider().destroy([{deployment: 'foobar', name: 'a', role: 'appserver', index: 1, id: 'i-1', state: 'running'}]),
    ).rejects.toThrow(/may not call ec2:TerminateInstances/)
  })
})

describe('options and [provider] settings', () => {
  it('rejects malformed ids when the provider is made', () => {
    expect(() => provider({image: {kind: 'id', value: 'ubuntu'}})).toThrow(/image id "ubuntu" is not an AMI id/)
    expect(() => provider({securityGroupIds: ['default']})).toThrow(
      /security group "default" is not a group id: use sg-… ids, not names/,
    )
    expect(() => provider({subnetId: 'my-subnet'})).toThrow(/subnet "my-subnet" is not a subnet id/)
  })

  const at = (line: number) => ({file: '/work/foobar.conf', line})

  it('reads the [provider] keys into options', () => {
    const settings = ec2Settings({
      provider: {value: 'ec2', source: at(2)},
      region: {value: 'eu-west-1', source: at(3)},
      profile: {value: 'ops', source: at(4)},
      image: {value: 'name debian-12-amd64-*', source: at(5)},
      image_owners: {value: '136693071363, self', source: at(6)},
      size: {value: 'ram 2GB', source: at(7)},
      key_name: {value: 'laptop', source: at(8)},
      subnet: {value: SUBNET, source: at(9)},
      security_groups: {value: GROUPS.join(' '), source: at(10)},
      ssh_user: {value: 'admin', source: at(11)},
      ssh_key: {value: 'keys/laptop.pem', source: at(12)},
    })
    expect(settings).toEqual({
      options: {
        region: 'eu-west-1',
        profile: 'ops',
        image: {kind: 'name', pattern: 'debian-12-amd64-*', owners: ['136693071363', 'self']},
        size: {kind: 'ram', megabytes: 2048},
        keyName: 'laptop',
        subnetId: SUBNET,
        securityGroupIds: GROUPS,
        sshUser: 'admin',
      },
      sshKey: '/work/keys/laptop.pem',
    })
    expect(ec2Settings({image: {value: 'ami-0123456789abcdef0', source: at(1)}}).options.image).toEqual({
      kind: 'id',
      value: 'ami-0123456789abcdef0',
    })
  })

  it('reports every bad key at once with its line', () => {
    let error: unknown
    try {
      ec2Settings({
        image: {value: 'id ami-xyz', source: at(5)},
        security_groups: {value: 'default', source: at(9)},
        size: {value: 'ram lots', source: at(7)},
      })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(DiagnosticsError)
    expect((error as DiagnosticsError).diagnostics.map((d) => [d.source?.line, d.message])).toEqual([
      [7, 'size "ram lots" is not a size'],
      [5, 'image id "ami-xyz" is not an AMI id (ami- and 8 or 17 hex digits)'],
      [9, 'security group "default" is not a group id: use sg-… ids, not names'],
    ])
  })

  it('reads the launch keys into options', () => {
    const {options} = ec2Settings({
      image: {value: `id ${AMI}`, source: at(5)},
      iam_instance_profile: {value: 'nodeset-app', source: at(6)},
      disk: {value: '20 GB gp3', source: at(7)},
      associate_public_ip: {value: 'yes', source: at(8)},
      imds: {value: 'optional', source: at(9)},
      imds_hop_limit: {value: '2', source: at(10)},
    })
    expect(options).toEqual({
      image: {kind: 'id', value: AMI},
      iamInstanceProfile: 'nodeset-app',
      disk: {sizeGb: 20, type: 'gp3'},
      associatePublicIp: true,
      imds: 'optional',
      imdsHopLimit: 2,
    })
    const disk = (value: string) => ec2Settings({image: {value: AMI, source: at(1)}, disk: {value, source: at(2)}})
    expect(disk('1TB').options.disk).toEqual({sizeGb: 1024})
    expect(disk('gp2 unencrypted').options.disk).toEqual({type: 'gp2', encrypted: false})
  })

  /** The problems of these settings, as [line, message, hint]. */
  function refused(settings: Record<string, string>): Array<[number | undefined, string, string | undefined]> {
    const keys = Object.keys(settings)
    try {
      ec2Settings(Object.fromEntries(keys.map((k, i) => [k, {value: settings[k], source: at(i + 1)}])), at(1))
    } catch (error) {
      if (!(error instanceof DiagnosticsError)) throw error
      return error.diagnostics.map((d) => [d.source?.line, d.message, d.hint])
    }
    return []
  }

  it('refuses launch keys EC2 would refuse, each at its line with what to write', () => {
    expect(
      refused({
        image: AMI,
        disk: '20',
        associate_public_ip: 'sometimes',
        imds: 'v1',
        imds_hop_limit: '0',
        iam_instance_profile: 'arn:aws:iam::123456789012:role/app',
      }).map(([line, message]) => [line, message]),
    ).toEqual([
      [2, 'disk size "20" has no unit: write 20GB'],
      [3, 'associate_public_ip must be true or false, not "sometimes"'],
      [4, 'imds must be required, optional, disabled, not "v1"'],
      [6, 'iam_instance_profile "arn:aws:iam::123456789012:role/app" is a role\'s ARN, not an instance profile\'s'],
      [5, 'imds_hop_limit must be a whole number from 1 to 64, not 0'],
    ])
    expect(refused({image: AMI, disk: '100GB io2'})[0][1]).toMatch(/io2 needs provisioned IOPS.*use gp3/)
    expect(refused({image: AMI, disk: '20GB st1'})[0][1]).toBe('disk type st1 cannot be a root volume')
    expect(refused({image: AMI, disk: '20000GB'})[0][1]).toBe('disk size 20000GB is outside 1 to 16384 GB')
    expect(refused({image: AMI, disk: '2000GB standard'})[0][1]).toBe(
      'disk size 2000GB is outside 1 to 1024 GB for standard',
    )
    expect(refused({image: AMI, disk: '512MB'})[0][1]).toMatch(/not a whole number of GB or TB/)
  })

  it('refuses region, id, owner, key pair and user forms that EC2 would refuse, before any call', () => {
    expect(
      refused({
        image: 'name debian-12-amd64-*',
        image_owners: 'debian',
        region: 'eu-west-1a',
        subnet: 'subnet-0abc',
        security_groups: 'sg-0123abcd sg-12',
        key_name: '~/.ssh/laptop.pem',
        ssh_user: 'Admin User',
        ssh_key: 'keys/laptop.pub',
        size: 'id 1',
      }),
    ).toEqual([
      [
        2,
        'image owner "debian" is neither a 12-digit account id nor one of self, amazon, aws-marketplace, aws-backup-vault',
        'Debian publishes from 136693071363, Canonical (Ubuntu) from 099720109477',
      ],
      [
        4,
        'subnet "subnet-0abc" is not a subnet id (subnet- and 8 or 17 hex digits)',
        'find the ids with "aws ec2 describe-subnets"',
      ],
      [
        5,
        'security group "sg-12" is not a group id (sg- and 8 or 17 hex digits)',
        'find the ids with "aws ec2 describe-security-groups"',
      ],
      [
        9,
        'size "id 1" is not an EC2 instance type',
        'name a type such as t3.small ("aws ec2 describe-instance-types"), or give the memory: "size = ram 2GB"',
      ],
      [
        3,
        'region "eu-west-1a" is an availability zone, not a region',
        'write region = eu-west-1; the zone follows from the subnet',
      ],
      [
        6,
        'key_name "~/.ssh/laptop.pem" is a file, not the name of an EC2 key pair',
        'write key_name = NAME as "aws ec2 describe-key-pairs" lists it, and the private key file as ssh_key = ~/.ssh/laptop.pem',
      ],
      [7, 'ssh_user "Admin User" is not a user name', 'admin on Debian, ubuntu on Ubuntu, ec2-user on Amazon Linux'],
      [8, 'ssh_key "keys/laptop.pub" is a public key', 'name the private key: keys/laptop'],
    ])
    expect(refused({image: AMI, region: 'Ireland'})[0].slice(1)).toEqual([
      'region "Ireland" is not an AWS region name',
      'write a region such as eu-west-1 or us-east-1 ("aws ec2 describe-regions" lists them)',
    ])
    expect(refused({image: 'name ami-0123456789abcdef0'})[0][1]).toBe(
      '"ami-0123456789abcdef0" is an AMI id, not a name pattern',
    )
    for (const region of ['us-east-1', 'eu-central-2', 'us-gov-west-1', 'ap-southeast-5', 'cn-north-1'])
      expect(refused({image: AMI, region})).toEqual([])
    expect(refused({image: 'name debian-12-*', image_owners: '136693071363 amazon aws-marketplace self'})).toEqual([])
    expect(refused({image: AMI, subnet: 'subnet-0abc1234', security_groups: 'sg-0123456789abcdef0'})).toEqual([])
  })

  it('refuses keys the ec2 provider would ignore, saying what it uses instead', () => {
    expect(
      refused({
        image: AMI,
        username: 'AKIAEXAMPLE',
        secret: 's3cr3t-value',
        hosts: 'a=10.0.0.1',
        bridge: 'nsb-x',
      }),
    ).toEqual([
      [
        2,
        'the ec2 provider does not use username',
        'remove username: the ec2 provider takes credentials from the AWS SDK\'s chain. Name a profile of ~/.aws/config with "profile = NAME" (or --profile), or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
      ],
      [
        3,
        'the ec2 provider does not use secret',
        expect.stringMatching(/^remove secret: the ec2 provider takes credentials/),
      ],
      [
        4,
        'hosts is a key of the static provider: the ec2 provider does not read it',
        expect.stringMatching(/^remove it; the ec2 provider reads region, profile, image/),
      ],
      [5, 'bridge is a key of the local provider: the ec2 provider does not read it', expect.any(String)],
    ])
    // A secret never appears in what is said about it.
    expect(JSON.stringify(refused({image: AMI, secret: 's3cr3t-value'}))).not.toContain('s3cr3t')
  })

  it('asks for an image, and for a form it understands', () => {
    expect(() => ec2Settings({})).toThrow(/the ec2 provider needs an image/)
    expect(() => ec2Settings({image: {value: 'debian 12', source: at(5)}})).toThrow(
      /image "debian 12" says neither which AMI nor which name/,
    )
  })
})
