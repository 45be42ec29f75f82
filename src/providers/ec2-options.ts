/** What the ec2 provider is told ([provider] settings, or options from code), and what is wrong with it. */
import type {EC2Client} from '@aws-sdk/client-ec2'
import type {SizeSpec} from '../core/source.js'

/** `id ami-…` is used as is; `name PATTERN` picks the newest available image whose name matches. */
export type ImageSpec = {kind: 'id'; value: string} | {kind: 'name'; pattern: string; owners?: string[]}

/** Polling of the SDK waiters, in seconds (see @smithy/util-waiter). */
export interface WaiterTiming {
  minDelay?: number
  maxDelay?: number
  maxWaitTime?: number
}

/** EBS volume types a root volume can be without provisioned IOPS. */
export const ROOT_VOLUME_TYPES = ['gp3', 'gp2', 'standard'] as const
export type RootVolumeType = (typeof ROOT_VOLUME_TYPES)[number]

/** The root volume (`disk = 20GB gp3`): what is not given stays as the image has it; encrypted unless told not to. */
export interface DiskSpec {
  /** GiB. */
  sizeGb?: number
  type?: RootVolumeType
  /** false leaves encryption as the image's snapshot has it. Default true. */
  encrypted?: boolean
}

/** The instance metadata service: `required` (IMDSv2, token-only), `optional` (IMDSv1 too) or `disabled`. */
export type ImdsMode = 'required' | 'optional' | 'disabled'

export interface Ec2Options {
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
  /** The instance profile (name or ARN) whose role the nodes get. */
  iamInstanceProfile?: string
  /** The root volume; default: the image's size and type, encrypted. */
  disk?: DiskSpec
  /** Give each node a public IPv4 address (true) or not (false); default: the subnet's own setting. */
  associatePublicIp?: boolean
  /** Default `required`. */
  imds?: ImdsMode
  /** How many network hops a metadata answer travels (2 lets containers on the node reach it); default 1. */
  imdsHopLimit?: number
  /** A ready client, or what makes one on the first call (tests, custom endpoints); region and profile are then ignored. */
  client?: EC2Client | (() => EC2Client)
  /** Waiter polling for running / terminated; default 5 s to 15 s between polls, 10 minutes at most. */
  waiter?: WaiterTiming
}

export const DEFAULT_INSTANCE_TYPE = 't3.micro'
/** Debian's own AWS account, which publishes the official Debian images. */
export const DEBIAN_IMAGE_OWNER = '136693071363'
/** Owners searched for `image = name …` when none are given: yours, Amazon's and Debian's, never strangers'. */
export const DEFAULT_IMAGE_OWNERS = ['self', 'amazon', DEBIAN_IMAGE_OWNER]
/** Owner aliases EC2 accepts besides account ids. */
export const OWNER_ALIASES = ['self', 'amazon', 'aws-marketplace', 'aws-backup-vault']
/** The SSH user when neither the node nor the settings name one (Debian's images). */
export const DEFAULT_SSH_USER = 'admin'
/** Largest root volume of the types nodeset sets, in GiB (gp2 and gp3: 16 TiB; standard: 1 TiB). */
export const MAX_DISK_GB: Record<RootVolumeType, number> = {gp3: 16_384, gp2: 16_384, standard: 1024}

/** One thing wrong with the options, and the `[provider]` key that sets it. */
export interface OptionProblem {
  setting:
    | 'image'
    | 'image_owners'
    | 'subnet'
    | 'security_groups'
    | 'size'
    | 'region'
    | 'profile'
    | 'key_name'
    | 'ssh_user'
    | 'iam_instance_profile'
    | 'disk'
    | 'imds_hop_limit'
  message: string
  hint?: string
}

// EC2 resource ids: the prefix and 8 (older) or 17 hex digits.
const idPattern = (prefix: string) => new RegExp(`^${prefix}-(?:[0-9a-f]{8}|[0-9a-f]{17})$`)
const AMI_ID = idPattern('ami')
const SUBNET_ID = idPattern('subnet')
const GROUP_ID = idPattern('sg')
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/
const ZONE = /^([a-z]{2}(?:-[a-z]+)+-\d{1,2})[a-z]$/
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/
const PROFILE_NAME = /^[\w+=,.@-]{1,128}$/
const PROFILE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:instance-profile\/(?:[\w+=,.@-]+\/)*[\w+=,.@-]{1,128}$/

/** What is wrong with these options (empty when they are fine). Offline: nothing here calls AWS. */
export function ec2OptionProblems(options: Ec2Options): OptionProblem[] {
  const problems: OptionProblem[] = []
  const add = (setting: OptionProblem['setting'], message: string, hint?: string) =>
    problems.push({setting, message, ...(hint ? {hint} : {})})
  const {image} = options
  if (image.kind === 'id' && !AMI_ID.test(image.value))
    add(
      'image',
      `image id "${image.value}" is not an AMI id (ami- and 8 or 17 hex digits)`,
      'copy the id from "aws ec2 describe-images", or write "image = name PATTERN"',
    )
  if (image.kind === 'name' && !image.pattern.trim()) add('image', 'the image name pattern is empty')
  if (image.kind === 'name' && /^ami-[0-9a-f]+$/.test(image.pattern))
    add('image', `"${image.pattern}" is an AMI id, not a name pattern`, `write "image = id ${image.pattern}"`)
  for (const owner of image.kind === 'name' ? (image.owners ?? []) : [])
    if (!/^\d{12}$/.test(owner) && !OWNER_ALIASES.includes(owner))
      add(
        'image_owners',
        `image owner "${owner}" is neither a 12-digit account id nor one of ${OWNER_ALIASES.join(', ')}`,
        `Debian publishes from ${DEBIAN_IMAGE_OWNER}, Canonical (Ubuntu) from 099720109477`,
      )
  if (options.subnetId && !SUBNET_ID.test(options.subnetId))
    add(
      'subnet',
      `subnet "${options.subnetId}" is not a subnet id (subnet- and 8 or 17 hex digits)`,
      'find the ids with "aws ec2 describe-subnets"',
    )
  for (const group of options.securityGroupIds ?? [])
    if (!GROUP_ID.test(group))
      add(
        'security_groups',
        /^sg-/.test(group)
          ? `security group "${group}" is not a group id (sg- and 8 or 17 hex digits)`
          : `security group "${group}" is not a group id: use sg-… ids, not names`,
        'find the ids with "aws ec2 describe-security-groups"',
      )
  if (options.size?.kind === 'ram' && !(options.size.megabytes > 0)) add('size', 'size ram must be more than 0 MB')
  const sizeProblem = options.size ? instanceTypeProblem(options.size) : undefined
  if (sizeProblem) add('size', sizeProblem.message, sizeProblem.hint)
  if (options.region !== undefined) {
    const p = regionProblem(options.region)
    if (p) add('region', p.message, p.hint)
  }
  if (options.profile !== undefined && !/^[^\s[\]]+$/.test(options.profile))
    add(
      'profile',
      `profile "${options.profile}" is not a profile name`,
      'name a profile of ~/.aws/config as "aws configure list-profiles" shows it',
    )
  if (options.keyName !== undefined) {
    const p = keyNameProblem(options.keyName)
    if (p) add('key_name', p.message, p.hint)
  }
  if (options.sshUser !== undefined && !/^[a-z_][a-z0-9_.-]{0,31}$/i.test(options.sshUser))
    add(
      'ssh_user',
      `ssh_user "${options.sshUser}" is not a user name`,
      'admin on Debian, ubuntu on Ubuntu, ec2-user on Amazon Linux',
    )
  const profile = options.iamInstanceProfile
  if (profile !== undefined && !PROFILE_NAME.test(profile) && !PROFILE_ARN.test(profile))
    add(
      'iam_instance_profile',
      /^arn:aws[a-z-]*:iam::\d{12}:role\//.test(profile)
        ? `iam_instance_profile "${profile}" is a role's ARN, not an instance profile's`
        : `iam_instance_profile "${profile}" is neither an instance profile name nor its ARN`,
      'give the instance profile that holds the role ("aws iam list-instance-profiles-for-role --role-name ROLE")',
    )
  for (const p of diskProblems(options.disk)) add('disk', p.message, p.hint)
  const hops = options.imdsHopLimit
  if (hops !== undefined && !(Number.isInteger(hops) && hops >= 1 && hops <= 64))
    add(
      'imds_hop_limit',
      `imds_hop_limit must be a whole number from 1 to 64, not ${hops}`,
      '2 lets containers reach it',
    )
  return problems
}

/** An instance type EC2 could know (`t3.small`), or what is wrong with it. */
export function instanceTypeProblem(size: SizeSpec): {message: string; hint: string} | undefined {
  if (size.kind === 'ram' || INSTANCE_TYPE.test(size.value)) return undefined
  return {
    message: `size "${size.kind} ${size.value}" is not an EC2 instance type`,
    hint: 'name a type such as t3.small ("aws ec2 describe-instance-types"), or give the memory: "size = ram 2GB"',
  }
}

export function regionProblem(region: string): {message: string; hint: string} | undefined {
  if (REGION.test(region)) return undefined
  const zone = ZONE.exec(region)
  if (zone)
    return {
      message: `region "${region}" is an availability zone, not a region`,
      hint: `write region = ${zone[1]}; the zone follows from the subnet`,
    }
  return {
    message: `region "${region}" is not an AWS region name`,
    hint: 'write a region such as eu-west-1 or us-east-1 ("aws ec2 describe-regions" lists them)',
  }
}

function keyNameProblem(name: string): {message: string; hint: string} | undefined {
  if (/[/\\]|\.(pem|pub|key)$/i.test(name) || name.startsWith('~'))
    return {
      message: `key_name "${name}" is a file, not the name of an EC2 key pair`,
      hint: `write key_name = NAME as "aws ec2 describe-key-pairs" lists it, and the private key file as ssh_key = ${name}`,
    }
  if (!/^[\x20-\x7e]{1,255}$/.test(name) || name !== name.trim())
    return {
      message: `key_name "${name}" is not an EC2 key pair name (up to 255 printable ASCII characters)`,
      hint: 'write the name as "aws ec2 describe-key-pairs" lists it',
    }
  return undefined
}

function diskProblems(disk: DiskSpec | undefined): Array<{message: string; hint?: string}> {
  if (!disk) return []
  const problems: Array<{message: string; hint?: string}> = []
  if (disk.type !== undefined && !ROOT_VOLUME_TYPES.includes(disk.type))
    problems.push({
      message: `disk type "${disk.type}" is not one nodeset sets for a root volume`,
      hint: `use ${ROOT_VOLUME_TYPES.join(', ')}`,
    })
  const max = MAX_DISK_GB[disk.type ?? 'gp3'] ?? MAX_DISK_GB.gp3
  if (disk.sizeGb !== undefined && !(Number.isInteger(disk.sizeGb) && disk.sizeGb >= 1 && disk.sizeGb <= max))
    problems.push({
      message: `disk size ${disk.sizeGb}GB is outside 1 to ${max} GB${disk.type ? ` for ${disk.type}` : ''}`,
      hint: 'e.g. disk = 20GB gp3',
    })
  return problems
}

/** The RunInstances MetadataOptions of these options: IMDSv2 only, one hop, unless told otherwise. */
export function metadataOptions(options: Pick<Ec2Options, 'imds' | 'imdsHopLimit'>): {
  HttpEndpoint: 'enabled' | 'disabled'
  HttpTokens?: 'required' | 'optional'
  HttpPutResponseHopLimit?: number
} {
  const mode = options.imds ?? 'required'
  if (mode === 'disabled') return {HttpEndpoint: 'disabled'}
  return {HttpEndpoint: 'enabled', HttpTokens: mode, HttpPutResponseHopLimit: options.imdsHopLimit ?? 1}
}
