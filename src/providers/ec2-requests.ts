/**
 * The ec2 provider's requests and answers as data: the RunInstances input of a batch of nodes, its
 * ClientToken, the tags and filters that find a deployment's instances, and an instance as a node.
 */
import {createHash} from 'node:crypto'
import type {
  BlockDeviceMapping,
  Filter,
  Instance,
  RunInstancesCommandInput,
  Tag,
  _InstanceType,
} from '@aws-sdk/client-ec2'
import {USER_DATA_LIMIT} from '../core/limits.js'
import type {ImageInfo} from './ec2-catalog.js'
import {Ec2Error} from './ec2-errors.js'
import {metadataOptions, type DiskSpec, type Ec2Options} from './ec2-options.js'
import type {NodeRecord, NodeRequest} from './provider.js'

export const TAGS = {deployment: 'nodeset:deployment', role: 'nodeset:role', index: 'nodeset:index'} as const
/** TerminateInstances and DescribeInstances by id take at most 1000 ids. */
export const ID_CHUNK = 1000
export const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped']
export const GONE_STATES = new Set(['shutting-down', 'terminated'])

/** Nodes launched by one RunInstances call: same deployment, role, instance type and user data. */
export interface Batch {
  deployment: string
  role: string
  instanceType: string
  userData: string
  /** Sorted by index: the i-th gets the instance of AmiLaunchIndex i. */
  requests: NodeRequest[]
}

/** Requests that can share one RunInstances call; nodes with their own user data each get their own. */
export function batchRequests(requests: NodeRequest[], instanceTypeOf: (request: NodeRequest) => string): Batch[] {
  const batches = new Map<string, Batch>()
  for (const request of [...requests].sort((a, b) => a.role.localeCompare(b.role) || a.index - b.index)) {
    const instanceType = instanceTypeOf(request)
    const key = JSON.stringify([request.deployment, request.role, instanceType, request.userData])
    const batch = batches.get(key) ?? {
      deployment: request.deployment,
      role: request.role,
      instanceType,
      userData: request.userData,
      requests: [],
    }
    batch.requests.push(request)
    batches.set(key, batch)
  }
  return [...batches.values()]
}

/**
 * The ClientToken of one launch: the same deployment, role and node names give the same token, so a
 * retried call returns the instances of the first instead of launching more. 56 ASCII characters.
 */
export function clientToken(deployment: string, role: string, names: string[], generation = 0): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([deployment, role, [...names].sort(), generation]))
    .digest('hex')
  return `nodeset-${digest.slice(0, 48)}`
}

/** The options that shape a launch. */
export type LaunchOptions = Pick<
  Ec2Options,
  | 'keyName'
  | 'subnetId'
  | 'securityGroupIds'
  | 'iamInstanceProfile'
  | 'disk'
  | 'associatePublicIp'
  | 'imds'
  | 'imdsHopLimit'
>

/**
 * The RunInstances input of one batch: IMDSv2 required with one hop, the root volume encrypted and
 * deleted with the instance, unless the options say otherwise.
 */
export function runInstancesInput(
  batch: Batch,
  image: ImageInfo,
  token: string,
  o: LaunchOptions,
): RunInstancesCommandInput {
  const single = batch.requests.length === 1 ? batch.requests[0] : undefined
  // One call tags all its instances alike: per-node tags go on here only when the batch is one node.
  const tags = single
    ? nodeTags(single)
    : [
        {Key: TAGS.deployment, Value: batch.deployment},
        {Key: TAGS.role, Value: batch.role},
      ]
  const root = rootVolume(o.disk)
  const groups = o.securityGroupIds?.length ? o.securityGroupIds : undefined
  // A public address is asked for on the primary network interface, which then carries the subnet and groups.
  const network: Partial<RunInstancesCommandInput> =
    o.associatePublicIp === undefined
      ? {...(o.subnetId ? {SubnetId: o.subnetId} : {}), ...(groups ? {SecurityGroupIds: groups} : {})}
      : {
          NetworkInterfaces: [
            {
              DeviceIndex: 0,
              AssociatePublicIpAddress: o.associatePublicIp,
              DeleteOnTermination: true,
              ...(o.subnetId ? {SubnetId: o.subnetId} : {}),
              ...(groups ? {Groups: groups} : {}),
            },
          ],
        }
  return {
    ImageId: image.imageId,
    InstanceType: batch.instanceType as _InstanceType,
    MinCount: batch.requests.length,
    MaxCount: batch.requests.length,
    ClientToken: token,
    UserData: Buffer.from(batch.userData, 'utf8').toString('base64'),
    ...(o.keyName ? {KeyName: o.keyName} : {}),
    ...network,
    ...(o.iamInstanceProfile
      ? {
          IamInstanceProfile: o.iamInstanceProfile.startsWith('arn:')
            ? {Arn: o.iamInstanceProfile}
            : {Name: o.iamInstanceProfile},
        }
      : {}),
    MetadataOptions: metadataOptions(o),
    ...(root ? {BlockDeviceMappings: [{DeviceName: image.rootDeviceName, Ebs: root}]} : {}),
    TagSpecifications: [
      {ResourceType: 'instance', Tags: tags},
      {ResourceType: 'volume', Tags: tags},
    ],
  }
}

/** Refuse, before any API call, what EC2 would refuse: oversized user data, two requests for one node. */
export function checkRequests(requests: NodeRequest[]): void {
  const seen = new Set<string>()
  for (const request of requests) {
    const bytes = Buffer.byteLength(request.userData, 'utf8')
    if (bytes > USER_DATA_LIMIT) {
      throw new Ec2Error(
        'UserDataTooLarge',
        `the user data of node ${request.name} is ${bytes} bytes; EC2 takes at most ${USER_DATA_LIMIT} (16 KB before base64). Move large files out of the boot script: setup copies them over SSH`,
      )
    }
    const key = `${request.deployment}\u0000${request.name}`
    if (seen.has(key)) throw new Ec2Error('DuplicateNode', `node ${request.name} is asked for twice in one create`)
    seen.add(key)
  }
}

/** The root volume's EBS settings nodeset sends, or undefined to keep the image's as they are. */
export function rootVolume(disk: DiskSpec | undefined): BlockDeviceMapping['Ebs'] | undefined {
  const encrypted = disk?.encrypted ?? true
  if (!encrypted && disk?.sizeGb === undefined && disk?.type === undefined) return undefined
  return {
    ...(disk?.sizeGb !== undefined ? {VolumeSize: disk.sizeGb} : {}),
    ...(disk?.type ? {VolumeType: disk.type} : {}),
    ...(encrypted ? {Encrypted: true} : {}),
    DeleteOnTermination: true,
  }
}

/** Refuse, before launching, a root volume the image cannot take. */
export function checkRootVolume(image: ImageInfo, disk: DiskSpec | undefined): void {
  if (!rootVolume(disk)) return
  if (image.rootDeviceType === 'instance-store' || !image.rootDeviceName)
    throw new Ec2Error(
      'NoRootVolume',
      `image ${image.imageId} has no EBS root volume, so its root volume cannot be sized or encrypted; use an EBS-backed image (Debian's, Ubuntu's and Amazon Linux's are), or launch it as it is with "disk = unencrypted"`,
    )
  if (disk?.sizeGb !== undefined && image.rootSnapshotGb !== undefined && disk.sizeGb < image.rootSnapshotGb)
    throw new Ec2Error(
      'DiskTooSmall',
      `disk = ${disk.sizeGb}GB is smaller than the root snapshot of image ${image.imageId} (${image.rootSnapshotGb} GB): write disk = ${image.rootSnapshotGb}GB or more`,
    )
}

export function nodeTags(request: NodeRequest): Tag[] {
  return [
    {Key: 'Name', Value: request.name},
    {Key: TAGS.deployment, Value: request.deployment},
    {Key: TAGS.role, Value: request.role},
    {Key: TAGS.index, Value: String(request.index)},
  ]
}

/** The tags a node of a multi-node launch gets after it: its own name and index. */
export function nameTags(request: NodeRequest): Tag[] {
  return [
    {Key: 'Name', Value: request.name},
    {Key: TAGS.index, Value: String(request.index)},
  ]
}

/** The instances of a deployment that are not gone for good. */
export function deploymentFilters(deployment: string): Filter[] {
  return [
    {Name: `tag:${TAGS.deployment}`, Values: [deployment]},
    {Name: 'instance-state-name', Values: [...LIVE_STATES, 'shutting-down']},
  ]
}

/** The live instances a launch with this ClientToken made. */
export function clientTokenFilters(token: string): Filter[] {
  return [
    {Name: 'client-token', Values: [token]},
    {Name: 'instance-state-name', Values: LIVE_STATES},
  ]
}

/** A node as EC2 shows it; `request` names it when the tags may not be visible yet. */
export function instanceRecord(instance: Instance, request?: NodeRequest, sshUser?: string): NodeRecord {
  const tags = new Map((instance.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']))
  const index = Number(tags.get(TAGS.index))
  return {
    deployment: request?.deployment ?? tags.get(TAGS.deployment) ?? '',
    // An instance of a multi-node launch that lost its Name tag shows by its id until a retried create names it.
    name: request?.name ?? tags.get('Name') ?? instance.InstanceId!,
    role: request?.role ?? tags.get(TAGS.role) ?? '',
    index: request?.index ?? (Number.isInteger(index) ? index : 0),
    id: instance.InstanceId!,
    address: instance.PublicIpAddress ?? instance.PrivateIpAddress,
    privateAddress: instance.PrivateIpAddress,
    state: nodeState(instance.State?.Name),
    ...(sshUser ? {sshUser} : {}),
  }
}

function nodeState(state: string | undefined): NodeRecord['state'] {
  switch (state) {
    case 'pending':
    case 'running':
      return state
    case 'stopping':
    case 'stopped':
      return 'stopped'
    case 'shutting-down':
    case 'terminated':
      return 'terminated'
    default:
      return 'unknown'
  }
}

export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}
