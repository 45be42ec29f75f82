import {createHash} from 'node:crypto'
import {
  CreateTagsCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand,
  paginateDescribeInstanceTypes,
  paginateDescribeInstances,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
  type Filter,
  type Instance,
  type InstanceTypeInfo,
  type RunInstancesCommandInput,
  type Tag,
  type _InstanceType,
} from '@aws-sdk/client-ec2'
import pLimit from 'p-limit'

import type {SizeSpec} from '../core/source.js'
import {Ec2Error, explainEc2Error, type Ec2ErrorContext} from './ec2-errors.js'
import type {NodeRecord, NodeRequest, Provider} from './provider.js'

export {Ec2Error, explainEc2Error} from './ec2-errors.js'

/** `id ami-…` is used as is; `name PATTERN` picks the newest available image whose name matches. */
export type ImageSpec = {kind: 'id'; value: string} | {kind: 'name'; pattern: string; owners?: string[]}

/** Polling of the SDK waiters, in seconds (see @smithy/util-waiter). */
export interface WaiterTiming {
  minDelay?: number
  maxDelay?: number
  maxWaitTime?: number
}

export interface Ec2ProviderOptions {
  /** Default: the SDK's chain (AWS_REGION, then the profile's region). */
  region?: string
  /** A profile of ~/.aws/config and ~/.aws/credentials; default: the SDK's chain (AWS_PROFILE, env keys, SSO, IMDS…). */
  profile?: string
  image: ImageSpec
  /** Size of nodes whose request carries none; default t3.micro. */
  size?: SizeSpec
  /** EC2 key pair installed for the SSH user. */
  keyName?: string
  subnetId?: string
  securityGroupIds?: string[]
  /** SSH user of the image (admin on Debian, ubuntu on Ubuntu, ec2-user on Amazon Linux). */
  sshUser?: string
  /** A ready client (tests, custom endpoints); region and profile are then ignored. */
  client?: EC2Client
  /** Waiter polling for running / terminated; default 5 s to 15 s between polls, 10 minutes at most. */
  waiter?: WaiterTiming
}

/** EC2 refuses user data above 16 KB, counted before base64. */
export const USER_DATA_LIMIT = 16_384
export const DEFAULT_INSTANCE_TYPE = 't3.micro'
/** Owners searched for `image = name …` when none are given: never strangers' public images. */
export const DEFAULT_IMAGE_OWNERS = ['self', 'amazon']
export const TAGS = {deployment: 'nodeset:deployment', role: 'nodeset:role', index: 'nodeset:index'} as const

const DEFAULT_WAITER = {minDelay: 5, maxDelay: 15, maxWaitTime: 600}
/** TerminateInstances and DescribeInstances by id take at most 1000 ids. */
const ID_CHUNK = 1000
/** Launches and tag calls in flight at once: fast, yet far from EC2's request rate limits. */
const CONCURRENCY = 4
/** A ClientToken stays bound to its launch for at least 24 h after termination; beyond that, take the next. */
const MAX_GENERATIONS = 20
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped']
const GONE_STATES = new Set(['shutting-down', 'terminated'])

/** Nodes launched by one RunInstances call: same deployment, role, instance type and user data. */
interface Batch {
  deployment: string
  role: string
  instanceType: string
  userData: string
  /** Sorted by index: the i-th gets the instance of AmiLaunchIndex i. */
  requests: NodeRequest[]
}

interface Launched {
  request: NodeRequest
  instance: Instance
}

export class Ec2Provider implements Provider {
  readonly name = 'ec2'
  private readonly client: EC2Client
  private readonly waiter: Required<WaiterTiming>
  private imageId?: Promise<string>
  private instanceTypes?: Promise<InstanceTypeInfo[]>

  constructor(private readonly options: Ec2ProviderOptions) {
    const problems = ec2OptionProblems(options)
    if (problems.length) throw new Error(`ec2 provider: ${problems.map((p) => p.message).join('; ')}`)
    this.client = options.client ?? new EC2Client({region: options.region, profile: options.profile})
    this.waiter = {...DEFAULT_WAITER, ...options.waiter}
  }

  async create(requests: NodeRequest[]): Promise<NodeRecord[]> {
    if (requests.length === 0) return []
    checkRequests(requests)
    const imageId = await this.resolveImage()
    const batches = await this.batches(requests)
    const limit = pLimit(CONCURRENCY)
    const results = await Promise.allSettled(batches.map((batch) => limit(() => this.launch(batch, imageId))))
    const launched = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []))
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failure) throw withLaunchedNote(failure.reason, launched)
    const live = launched.filter((l) => !GONE_STATES.has(l.instance.State?.Name ?? ''))
    await this.waitRunning(live)
    const described = await this.describe(launched.map((l) => l.instance.InstanceId!))
    return launched.map(({request, instance}) => this.record(described.get(instance.InstanceId!) ?? instance, request))
  }

  async list(deployment: string): Promise<NodeRecord[]> {
    const filters: Filter[] = [
      {Name: `tag:${TAGS.deployment}`, Values: [deployment]},
      {Name: 'instance-state-name', Values: [...LIVE_STATES, 'shutting-down']},
    ]
    const records: NodeRecord[] = []
    try {
      for await (const page of paginateDescribeInstances({client: this.client, pageSize: 1000}, {Filters: filters})) {
        for (const reservation of page.Reservations ?? [])
          for (const instance of reservation.Instances ?? []) records.push(this.record(instance))
      }
    } catch (error) {
      throw explainEc2Error(error, this.context('DescribeInstances'))
    }
    return records.sort((a, b) => a.role.localeCompare(b.role) || a.index - b.index || a.name.localeCompare(b.name))
  }

  async destroy(nodes: NodeRecord[]): Promise<void> {
    const ids = [...new Set(nodes.map((n) => n.id))]
    const chunks = chunk(ids, ID_CHUNK)
    for (const ids of chunks) {
      try {
        await this.client.send(new TerminateInstancesCommand({InstanceIds: ids}))
      } catch (error) {
        throw explainEc2Error(error, this.context('TerminateInstances', {nodes: namesOf(nodes, ids)}))
      }
    }
    for (const ids of chunks) {
      try {
        await waitUntilInstanceTerminated({client: this.client, ...this.waiter}, {InstanceIds: ids})
      } catch (error) {
        throw await this.waitFailure('terminated', ids, (id) => nodes.find((n) => n.id === id)?.name ?? id, error)
      }
    }
  }

  /** The AMI id to launch: as given, or the newest available image whose name matches. */
  resolveImage(): Promise<string> {
    const image = this.options.image
    if (image.kind === 'id') return Promise.resolve(image.value)
    this.imageId ??= this.findImage(image.pattern, image.owners?.length ? image.owners : DEFAULT_IMAGE_OWNERS)
    return this.imageId
  }

  /** The instance type a size means: `id`/`name` as is, `ram` the smallest current x86_64 type with that much memory. */
  async resolveSize(size: SizeSpec): Promise<string> {
    if (size.kind !== 'ram') return size.value
    const types = await this.listInstanceTypes()
    const fitting = types.filter((t) => (t.MemoryInfo?.SizeInMiB ?? 0) >= size.megabytes && t.InstanceType)
    fitting.sort(
      (a, b) =>
        a.MemoryInfo!.SizeInMiB! - b.MemoryInfo!.SizeInMiB! ||
        (a.VCpuInfo?.DefaultVCpus ?? 0) - (b.VCpuInfo?.DefaultVCpus ?? 0) ||
        a.InstanceType!.localeCompare(b.InstanceType!),
    )
    if (!fitting[0]) {
      throw new Ec2Error(
        'NoInstanceType',
        `no current-generation x86_64 instance type has ${size.megabytes} MB of memory or more; ask for less ("size = ram 4GB"), or name a type ("size = id r7i.48xlarge")`,
      )
    }
    return fitting[0].InstanceType!
  }

  private async findImage(pattern: string, owners: string[]): Promise<string> {
    const input = {
      Owners: owners,
      Filters: [
        {Name: 'name', Values: [pattern]},
        {Name: 'state', Values: ['available']},
      ],
    }
    let images
    try {
      images = (await this.client.send(new DescribeImagesCommand(input))).Images ?? []
    } catch (error) {
      throw explainEc2Error(error, this.context('DescribeImages', {image: pattern}))
    }
    const newest = images
      .filter((i) => i.ImageId)
      .sort((a, b) => (b.CreationDate ?? '').localeCompare(a.CreationDate ?? ''))[0]
    if (!newest) {
      throw new Ec2Error(
        'NoImage',
        `no available image named "${pattern}" owned by ${owners.join(', ')}${this.options.region ? ` in region ${this.options.region}` : ''}; ` +
          'check the pattern (* and ? are wildcards), set image_owners to the account that publishes it (Debian: 136693071363, Ubuntu: 099720109477), or use "image = id ami-…"',
      )
    }
    return newest.ImageId!
  }

  private listInstanceTypes(): Promise<InstanceTypeInfo[]> {
    this.instanceTypes ??= (async () => {
      const filters = [
        {Name: 'current-generation', Values: ['true']},
        {Name: 'processor-info.supported-architecture', Values: ['x86_64']},
        {Name: 'bare-metal', Values: ['false']},
      ]
      const types: InstanceTypeInfo[] = []
      try {
        for await (const page of paginateDescribeInstanceTypes(
          {client: this.client, pageSize: 100},
          {Filters: filters},
        ))
          types.push(...(page.InstanceTypes ?? []))
      } catch (error) {
        this.instanceTypes = undefined
        throw explainEc2Error(error, this.context('DescribeInstanceTypes'))
      }
      return types
    })()
    return this.instanceTypes
  }

  /** Requests that can share one RunInstances call; nodes with their own user data each get their own. */
  private async batches(requests: NodeRequest[]): Promise<Batch[]> {
    const batches = new Map<string, Batch>()
    for (const request of [...requests].sort((a, b) => a.role.localeCompare(b.role) || a.index - b.index)) {
      const instanceType = await this.resolveSize(
        request.size ?? this.options.size ?? {kind: 'id', value: DEFAULT_INSTANCE_TYPE},
      )
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
   * Launch one batch, idempotently: a retry sends the same ClientToken and gets the same instances.
   * A token whose instances were all terminated (EC2 keeps answering with them for a day) or that
   * belonged to a launch with other settings and no live instance moves on to the next generation.
   */
  private async launch(batch: Batch, imageId: string): Promise<Launched[]> {
    const nodes = batch.requests.map((r) => r.name)
    for (let generation = 0; generation < MAX_GENERATIONS; generation++) {
      const token = clientToken(batch.deployment, batch.role, nodes, generation)
      let instances: Instance[]
      try {
        instances =
          (await this.client.send(new RunInstancesCommand(this.runInput(batch, imageId, token)))).Instances ?? []
      } catch (error) {
        if (errorCode(error) === 'IdempotentParameterMismatch' && !(await this.hasLiveInstances(token, nodes))) continue
        throw explainEc2Error(
          error,
          this.context('RunInstances', {
            image: imageId,
            instanceType: batch.instanceType,
            nodes,
            secrets: [batch.userData],
          }),
        )
      }
      if (instances.length > 0 && instances.every((i) => GONE_STATES.has(i.State?.Name ?? ''))) continue
      instances.sort((a, b) => (a.AmiLaunchIndex ?? 0) - (b.AmiLaunchIndex ?? 0))
      const launched = batch.requests.flatMap((request, i) => (instances[i] ? [{request, instance: instances[i]}] : []))
      if (batch.requests.length > 1) await this.nameInstances(launched)
      return launched
    }
    throw new Ec2Error(
      'ClientTokensExhausted',
      `nodes ${nodes.join(', ')} were launched and terminated ${MAX_GENERATIONS} times within a day; wait a day, or rename them`,
    )
  }

  private runInput(batch: Batch, imageId: string, token: string): RunInstancesCommandInput {
    const single = batch.requests.length === 1 ? batch.requests[0] : undefined
    // One call tags all its instances alike: per-node tags go on here only when the batch is one node.
    const tags = single
      ? nodeTags(single)
      : [
          {Key: TAGS.deployment, Value: batch.deployment},
          {Key: TAGS.role, Value: batch.role},
        ]
    const o = this.options
    return {
      ImageId: imageId,
      InstanceType: batch.instanceType as _InstanceType,
      MinCount: batch.requests.length,
      MaxCount: batch.requests.length,
      ClientToken: token,
      UserData: Buffer.from(batch.userData, 'utf8').toString('base64'),
      ...(o.keyName ? {KeyName: o.keyName} : {}),
      ...(o.subnetId ? {SubnetId: o.subnetId} : {}),
      ...(o.securityGroupIds?.length ? {SecurityGroupIds: o.securityGroupIds} : {}),
      TagSpecifications: [
        {ResourceType: 'instance', Tags: tags},
        {ResourceType: 'volume', Tags: tags},
      ],
    }
  }

  /** Give each instance of a multi-node batch its own Name and index, retrying while EC2 does not know the new id yet. */
  private async nameInstances(launched: Launched[]): Promise<void> {
    const limit = pLimit(CONCURRENCY)
    await Promise.all(
      launched.map(({request, instance}) =>
        limit(async () => {
          const input = {
            Resources: [instance.InstanceId!],
            Tags: [
              {Key: 'Name', Value: request.name},
              {Key: TAGS.index, Value: String(request.index)},
            ],
          }
          for (let attempt = 1; ; attempt++) {
            try {
              await this.client.send(new CreateTagsCommand(input))
              return
            } catch (error) {
              if (errorCode(error) !== 'InvalidInstanceID.NotFound' || attempt >= 5)
                throw explainEc2Error(error, this.context('CreateTags', {nodes: [request.name]}))
              await sleep(this.waiter.minDelay * attempt)
            }
          }
        }),
      ),
    )
  }

  private async hasLiveInstances(token: string, nodes: string[]): Promise<boolean> {
    const input = {
      Filters: [
        {Name: 'client-token', Values: [token]},
        {Name: 'instance-state-name', Values: LIVE_STATES},
      ],
    }
    try {
      const out = await this.client.send(new DescribeInstancesCommand(input))
      return (out.Reservations ?? []).some((r) => (r.Instances ?? []).length > 0)
    } catch (error) {
      throw explainEc2Error(error, this.context('DescribeInstances', {nodes}))
    }
  }

  private async waitRunning(launched: Launched[]): Promise<void> {
    const nameOf = (id: string) => launched.find((l) => l.instance.InstanceId === id)?.request.name ?? id
    for (const ids of chunk(
      launched.map((l) => l.instance.InstanceId!),
      ID_CHUNK,
    )) {
      try {
        await waitUntilInstanceRunning({client: this.client, ...this.waiter}, {InstanceIds: ids})
      } catch (error) {
        throw await this.waitFailure('running', ids, nameOf, error)
      }
    }
  }

  /** Say which instances did not get there and why (EC2's state reason), instead of the waiter's raw dump. */
  private async waitFailure(
    goal: string,
    ids: string[],
    nameOf: (id: string) => string,
    error: unknown,
  ): Promise<Error> {
    let states: Map<string, Instance>
    try {
      states = await this.describe(ids)
    } catch {
      states = new Map()
    }
    const stuck = ids
      .map((id) => ({id, instance: states.get(id)}))
      .filter(({instance}) => instance?.State?.Name !== goal)
      .map(
        ({id, instance}) =>
          `${nameOf(id)} (${id}) is ${instance?.State?.Name ?? 'unknown'}${instance?.StateReason?.Message ? `: ${instance.StateReason.Message}` : ''}`,
      )
    const why =
      (error as {name?: string}).name === 'TimeoutError' ? `within ${this.waiter.maxWaitTime} s` : 'and never will'
    return new Ec2Error(
      'WaiterFailed',
      `instances did not become ${goal} ${why}: ${stuck.join('; ') || ids.join(', ')}. Look at them in the EC2 console (or "aws ec2 describe-instances"), then run the command again`,
      {cause: error},
    )
  }

  private async describe(ids: string[]): Promise<Map<string, Instance>> {
    const byId = new Map<string, Instance>()
    for (const part of chunk(ids, ID_CHUNK)) {
      try {
        const out = await this.client.send(new DescribeInstancesCommand({InstanceIds: part}))
        for (const r of out.Reservations ?? [])
          for (const i of r.Instances ?? []) if (i.InstanceId) byId.set(i.InstanceId, i)
      } catch (error) {
        throw explainEc2Error(error, this.context('DescribeInstances'))
      }
    }
    return byId
  }

  /** A node as EC2 shows it; `request` names it when the tags may not be visible yet. */
  private record(instance: Instance, request?: NodeRequest): NodeRecord {
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
      ...(this.options.sshUser ? {sshUser: this.options.sshUser} : {}),
    }
  }

  private context(operation: string, extra: Partial<Ec2ErrorContext> = {}): Ec2ErrorContext {
    const o = this.options
    return {
      operation,
      region: o.region,
      image: o.image.kind === 'id' ? o.image.value : o.image.pattern,
      keyName: o.keyName,
      subnetId: o.subnetId,
      securityGroupIds: o.securityGroupIds,
      ...extra,
    }
  }
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

/** One thing wrong with the options, and the `[provider]` key that sets it. */
export interface OptionProblem {
  setting: 'image' | 'subnet' | 'security_groups' | 'size'
  message: string
  hint?: string
}

/** What is wrong with these options (empty when they are fine). */
export function ec2OptionProblems(options: Ec2ProviderOptions): OptionProblem[] {
  const problems: OptionProblem[] = []
  const {image} = options
  if (image.kind === 'id' && !/^ami-[0-9a-f]{8,17}$/.test(image.value)) {
    problems.push({
      setting: 'image',
      message: `image id "${image.value}" is not an AMI id (ami- and 8 or 17 hex digits)`,
      hint: 'copy the id from "aws ec2 describe-images", or write "image = name PATTERN"',
    })
  }
  if (image.kind === 'name' && !image.pattern.trim())
    problems.push({setting: 'image', message: 'the image name pattern is empty'})
  if (options.subnetId && !/^subnet-[0-9a-f]+$/.test(options.subnetId)) {
    problems.push({
      setting: 'subnet',
      message: `subnet "${options.subnetId}" is not a subnet id (subnet-…)`,
      hint: 'find the ids with "aws ec2 describe-subnets"',
    })
  }
  for (const group of options.securityGroupIds ?? []) {
    if (!/^sg-[0-9a-f]+$/.test(group)) {
      problems.push({
        setting: 'security_groups',
        message: `security group "${group}" is not a group id: use sg-… ids, not names`,
        hint: 'find the ids with "aws ec2 describe-security-groups"',
      })
    }
  }
  if (options.size?.kind === 'ram' && !(options.size.megabytes > 0))
    problems.push({setting: 'size', message: 'size ram must be more than 0 MB'})
  return problems
}

/** Refuse, before any API call, what EC2 would refuse: oversized user data, two requests for one node. */
function checkRequests(requests: NodeRequest[]): void {
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

function nodeTags(request: NodeRequest): Tag[] {
  return [
    {Key: 'Name', Value: request.name},
    {Key: TAGS.deployment, Value: request.deployment},
    {Key: TAGS.role, Value: request.role},
    {Key: TAGS.index, Value: String(request.index)},
  ]
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

function withLaunchedNote(reason: unknown, launched: Launched[]): Error {
  const error = reason instanceof Error ? reason : new Error(String(reason))
  if (launched.length)
    error.message += ` (launched before the failure, and reused by the next run: ${launched.map((l) => l.request.name).join(', ')})`
  return error
}

function namesOf(nodes: NodeRecord[], ids: string[]): string[] {
  return ids.map((id) => nodes.find((n) => n.id === id)?.name ?? id)
}

function errorCode(error: unknown): string | undefined {
  const e = error as {Code?: string; name?: string} | undefined
  return e?.Code ?? e?.name
}

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000))
}
