/**
 * The `ec2` provider: nodes are EC2 instances, found again by their tags. Launches are idempotent
 * (ClientToken per batch); the requests are built as data in ec2-requests.ts, images and instance
 * types are looked up in ec2-catalog.ts, and EC2's errors explained in ec2-errors.ts.
 */
import type {EC2Client, Instance} from '@aws-sdk/client-ec2'
import pLimit from 'p-limit'

import type {SizeSpec} from '../core/source.js'
import type {HostKeyPolicy, HostKeyStore} from '../ssh/hostkeys.js'
import type {SshTarget} from '../ssh/ssh.js'
import {Ec2Catalog, type ImageInfo} from './ec2-catalog.js'
import {ec2Sdk} from './ec2-sdk.js'
import {Ec2Instances} from './ec2-instances.js'
import {Ec2Error, errorCode, explainEc2Error, withLaunchedNote, type Ec2ErrorContext} from './ec2-errors.js'
import {
  DEFAULT_INSTANCE_TYPE,
  DEFAULT_SSH_USER,
  ec2OptionProblems,
  type Ec2Options,
  type WaiterTiming,
} from './ec2-options.js'
import {
  batchRequests,
  checkRequests,
  checkRootVolume,
  chunk,
  clientToken,
  clientTokenFilters,
  deploymentFilters,
  GONE_STATES,
  ID_CHUNK,
  instanceRecord,
  nameTags,
  rootVolume,
  runInstancesInput,
  type Batch,
} from './ec2-requests.js'
import {checkDeployment, createdNodeTarget, type NodeRecord, type NodeRequest, type Provider} from './provider.js'

export {Ec2Error, explainEc2Error} from './ec2-errors.js'
export {clientToken} from './ec2-requests.js'

export interface Ec2ProviderOptions extends Ec2Options {
  /** The deployment whose instances these are (the `nodeset:deployment` tag). */
  deployment: string
  /** Where the host keys the nodes report when they phone home are pinned (hostKeyPolicy). */
  hostKeys: HostKeyStore
  /** Private key file of the key pair `keyName` (the `ssh_key` setting), for sshTarget. */
  sshKey?: string
}

export {USER_DATA_LIMIT} from '../core/limits.js'

const DEFAULT_WAITER = {minDelay: 5, maxDelay: 15, maxWaitTime: 600}
/** Launches and tag calls in flight at once: fast, yet far from EC2's request rate limits. */
const CONCURRENCY = 4
/** A ClientToken stays bound to its launch for at least 24 h after termination; beyond that, take the next. */
const MAX_GENERATIONS = 20

interface Launched {
  request: NodeRequest
  instance: Instance
}

export class Ec2Provider implements Provider {
  readonly kind = 'ec2'
  readonly deployment: string
  private made?: Promise<EC2Client>
  private readonly waiter: Required<WaiterTiming>
  private readonly catalog: Ec2Catalog
  private readonly instances: Ec2Instances

  /** Checks the options (offline); the EC2 client is made on the first call to AWS, not here. */
  constructor(private readonly options: Ec2ProviderOptions) {
    const problems = ec2OptionProblems(options)
    if (problems.length) throw new Error(`ec2 provider: ${problems.map((p) => p.message).join('; ')}`)
    this.waiter = {...DEFAULT_WAITER, ...options.waiter}
    this.deployment = options.deployment
    const context = (operation: string, extra?: Partial<Ec2ErrorContext>) => this.context(operation, extra)
    const client = () => this.client()
    this.catalog = new Ec2Catalog(client, options.region, context)
    this.instances = new Ec2Instances(client, this.waiter, context)
  }

  private client(): Promise<EC2Client> {
    const given = this.options.client
    this.made ??=
      typeof given === 'function' ? Promise.resolve(given()) : given ? Promise.resolve(given) : newClient(this.options)
    return this.made
  }

  /** Nothing to make ready: the instances reach the operator over the network as it is. */
  async prepare(): Promise<{operatorAddress?: string}> {
    return {}
  }

  /** The image's user (ssh_user, default admin) with the key pair's private key (ssh_key). */
  sshTarget(node: NodeRecord): SshTarget {
    const user = node.sshUser ?? this.options.sshUser
    return createdNodeTarget(node, {user, defaultUser: DEFAULT_SSH_USER, privateKeyPath: this.options.sshKey})
  }

  /** The keys each node reported over its authenticated phone-home, and no other. */
  hostKeyPolicy(): HostKeyPolicy {
    return {mode: 'pinned', store: this.options.hostKeys}
  }

  async create(requests: NodeRequest[]): Promise<NodeRecord[]> {
    checkDeployment(this.kind, this.deployment, requests)
    if (requests.length === 0) return []
    checkRequests(requests)
    const image = await this.catalog.resolveImage(this.options.image, rootVolume(this.options.disk) !== undefined)
    checkRootVolume(image, this.options.disk)
    const batches = await this.batches(requests)
    const limit = pLimit(CONCURRENCY)
    const results = await Promise.allSettled(batches.map((batch) => limit(() => this.launch(batch, image))))
    const launched = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []))
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failure)
      throw withLaunchedNote(
        failure.reason,
        launched.map((l) => l.request.name),
      )
    const live = launched.filter((l) => !GONE_STATES.has(l.instance.State?.Name ?? ''))
    await this.waitRunning(live)
    const described = await this.instances.describe(launched.map((l) => l.instance.InstanceId!))
    return launched.map(({request, instance}) => this.record(described.get(instance.InstanceId!) ?? instance, request))
  }

  async list(): Promise<NodeRecord[]> {
    const filters = deploymentFilters(this.deployment)
    const records: NodeRecord[] = []
    try {
      const {paginateDescribeInstances} = await ec2Sdk()
      const pages = paginateDescribeInstances({client: await this.client(), pageSize: 1000}, {Filters: filters})
      for await (const page of pages) {
        for (const reservation of page.Reservations ?? [])
          for (const instance of reservation.Instances ?? []) records.push(this.record(instance))
      }
    } catch (error) {
      throw explainEc2Error(error, this.context('DescribeInstances'))
    }
    return records.sort((a, b) => a.role.localeCompare(b.role) || a.index - b.index || a.name.localeCompare(b.name))
  }

  async destroy(nodes: NodeRecord[]): Promise<void> {
    checkDeployment(this.kind, this.deployment, nodes)
    const ids = [...new Set(nodes.map((n) => n.id))]
    const chunks = chunk(ids, ID_CHUNK)
    for (const ids of chunks) {
      try {
        const {TerminateInstancesCommand} = await ec2Sdk()
        await (await this.client()).send(new TerminateInstancesCommand({InstanceIds: ids}))
      } catch (error) {
        throw explainEc2Error(error, this.context('TerminateInstances', {nodes: namesOf(nodes, ids)}))
      }
    }
    await this.instances.waitFor('terminated', ids, (id) => nodes.find((n) => n.id === id)?.name ?? id)
  }

  /** The AMI id to launch: as given, or the newest available image whose name matches. */
  async resolveImage(): Promise<string> {
    return (await this.catalog.resolveImage(this.options.image, false)).imageId
  }

  /** The instance type a size means: `id`/`name` as is, `ram` the smallest current x86_64 type with that much memory. */
  resolveSize(size: SizeSpec): Promise<string> {
    return this.catalog.resolveSize(size)
  }

  /** The batches of one create, with the instance type each node's size means. */
  private async batches(requests: NodeRequest[]): Promise<Batch[]> {
    const types = new Map<NodeRequest, string>()
    for (const r of requests)
      types.set(r, await this.resolveSize(r.size ?? this.options.size ?? {kind: 'id', value: DEFAULT_INSTANCE_TYPE}))
    return batchRequests(requests, (r) => types.get(r)!)
  }

  /**
   * Launch one batch, idempotently: a retry sends the same ClientToken and gets the same instances.
   * A token whose instances were all terminated (EC2 keeps answering with them for a day) or that
   * belonged to a launch with other settings and no live instance moves on to the next generation.
   */
  private async launch(batch: Batch, image: ImageInfo): Promise<Launched[]> {
    const nodes = batch.requests.map((r) => r.name)
    const {RunInstancesCommand} = await ec2Sdk()
    for (let generation = 0; generation < MAX_GENERATIONS; generation++) {
      const token = clientToken(batch.deployment, batch.role, nodes, generation)
      let instances: Instance[]
      try {
        instances =
          (
            await (
              await this.client()
            ).send(new RunInstancesCommand(runInstancesInput(batch, image, token, this.options)))
          ).Instances ?? []
      } catch (error) {
        if (errorCode(error) === 'IdempotentParameterMismatch' && !(await this.hasLiveInstances(token, nodes))) continue
        throw explainEc2Error(
          error,
          this.context('RunInstances', {
            image: image.imageId,
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

  /** Give each instance of a multi-node batch its own Name and index, retrying while EC2 does not know the new id yet. */
  private async nameInstances(launched: Launched[]): Promise<void> {
    const limit = pLimit(CONCURRENCY)
    const {CreateTagsCommand} = await ec2Sdk()
    const client = await this.client()
    await Promise.all(
      launched.map(({request, instance}) =>
        limit(async () => {
          const input = {
            Resources: [instance.InstanceId!],
            Tags: nameTags(request),
          }
          for (let attempt = 1; ; attempt++) {
            try {
              await client.send(new CreateTagsCommand(input))
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
    try {
      const {DescribeInstancesCommand} = await ec2Sdk()
      const out = await (await this.client()).send(new DescribeInstancesCommand({Filters: clientTokenFilters(token)}))
      return (out.Reservations ?? []).some((r) => (r.Instances ?? []).length > 0)
    } catch (error) {
      throw explainEc2Error(error, this.context('DescribeInstances', {nodes}))
    }
  }

  private async waitRunning(launched: Launched[]): Promise<void> {
    const nameOf = (id: string) => launched.find((l) => l.instance.InstanceId === id)?.request.name ?? id
    await this.instances.waitFor(
      'running',
      launched.map((l) => l.instance.InstanceId!),
      nameOf,
    )
  }

  private record(instance: Instance, request?: NodeRequest): NodeRecord {
    return instanceRecord(instance, request, this.options.sshUser)
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
      iamInstanceProfile: o.iamInstanceProfile,
      ...extra,
    }
  }
}

/**
 * The SDK's client for these options. The SDK warns, once per process, that its future versions will
 * need a newer Node than this one runs; nodeset says which Node it needs itself (package.json engines),
 * so the warning is off unless AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED is set otherwise.
 */
async function newClient(o: Pick<Ec2Options, 'region' | 'profile'>): Promise<EC2Client> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const {EC2Client} = await ec2Sdk()
  return new EC2Client({region: o.region, profile: o.profile})
}

function namesOf(nodes: NodeRecord[], ids: string[]): string[] {
  return ids.map((id) => nodes.find((n) => n.id === id)?.name ?? id)
}

function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000))
}
