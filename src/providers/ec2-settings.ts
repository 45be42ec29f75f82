import os from 'node:os'
import path from 'node:path'

import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import {parseBool, parseSize} from '../nodeset/read.js'
import type {Source} from '../core/source.js'
import {
  ec2OptionProblems,
  ROOT_VOLUME_TYPES,
  type DiskSpec,
  type Ec2Options,
  type ImageSpec,
  type ImdsMode,
  type RootVolumeType,
} from './ec2-options.js'
import {ignoredKeyProblems, type ProviderValue} from './provider-keys.js'

/** A `[provider]` value as the nodeset reader gives it. */
export type ProviderSetting = ProviderValue

export interface Ec2Settings {
  options: Ec2Options
  /** Private key file for SSH (the `ssh_key` key), absolute; it must match the EC2 key pair `key_name`. */
  sshKey?: string
}

const IMDS_MODES: ImdsMode[] = ['required', 'optional', 'disabled']

/**
 * `[provider]` keys → Ec2Provider options (docs/ec2.md lists them). Every problem is reported at once
 * with its file:line (`at` stands in for a key that is missing); nothing here calls AWS.
 */
export function ec2Settings(settings: Record<string, ProviderSetting | undefined>, at?: Source): Ec2Settings {
  const problems: Diagnostic[] = ignoredKeyProblems('ec2', settings, at)
  const text = (key: string) => settings[key]?.value.trim() || undefined
  const problem = (key: string, message: string, hint?: string) =>
    problems.push({message, source: settings[key]?.source ?? at, ...(hint ? {hint} : {})})
  const image = parseImage(settings.image, settings.image_owners, problems, at)
  const options: Ec2Options = {image: image ?? {kind: 'id', value: 'ami-00000000'}}
  if (text('region')) options.region = text('region')
  if (text('profile')) options.profile = text('profile')
  if (text('key_name')) options.keyName = text('key_name')
  if (text('subnet')) options.subnetId = text('subnet')
  if (text('ssh_user')) options.sshUser = text('ssh_user')
  if (text('security_groups')) options.securityGroupIds = words(text('security_groups')!)
  if (text('iam_instance_profile')) options.iamInstanceProfile = text('iam_instance_profile')
  if (text('size')) {
    const size = parseSize(text('size')!)
    if (size) options.size = size
    else
      problem(
        'size',
        `size "${text('size')}" is not a size`,
        'write "size = id t3.small", "size = name t3.small" or "size = ram 2GB"',
      )
  }
  if (text('disk')) {
    const disk = parseDisk(text('disk')!)
    if (typeof disk === 'string')
      problem('disk', disk, 'write e.g. "disk = 20GB gp3" (size in GB, type gp3, gp2 or standard)')
    else options.disk = disk
  }
  if (text('associate_public_ip')) {
    const b = parseBool(text('associate_public_ip')!)
    if (b === undefined)
      problem('associate_public_ip', `associate_public_ip must be true or false, not "${text('associate_public_ip')}"`)
    else options.associatePublicIp = b
  }
  if (text('imds')) {
    const mode = text('imds') as ImdsMode
    if (IMDS_MODES.includes(mode)) options.imds = mode
    else
      problem(
        'imds',
        `imds must be ${IMDS_MODES.join(', ')}, not "${text('imds')}"`,
        'required (the default) lets only IMDSv2 token requests in; optional allows IMDSv1 too',
      )
  }
  const hops = text('imds_hop_limit')
  if (hops && /^\d+$/.test(hops)) options.imdsHopLimit = Number(hops)
  else if (hops) problem('imds_hop_limit', `imds_hop_limit must be a whole number from 1 to 64, not "${hops}"`)
  // Without an image the options hold a stand-in for it, whose problems are not the file's.
  for (const p of ec2OptionProblems(options))
    if (image || (p.setting !== 'image' && p.setting !== 'image_owners')) problem(p.setting, p.message, p.hint)
  const sshKey = text('ssh_key')
  if (sshKey?.endsWith('.pub'))
    problem(
      'ssh_key',
      `ssh_key "${sshKey}" is a public key`,
      `name the private key: ${sshKey.slice(0, -'.pub'.length)}`,
    )
  if (problems.length) throw new DiagnosticsError(problems)
  return {options, ...(sshKey ? {sshKey: resolvePath(sshKey, settings.ssh_key?.source)} : {})}
}

/** `id ami-…`, `name PATTERN`, or a bare `ami-…`. */
export function parseImage(
  image: ProviderSetting | undefined,
  owners: ProviderSetting | undefined,
  problems: Diagnostic[],
  at?: Source,
): ImageSpec | undefined {
  const value = image?.value.trim()
  if (!value) {
    problems.push({
      message: 'the ec2 provider needs an image',
      source: image?.source ?? at,
      hint: 'add "image = name debian-12-amd64-*" (Debian\'s own images) or "image = id ami-…"',
    })
    return undefined
  }
  const [kind, ...rest] = value.split(/\s+/)
  const ownerList = owners?.value.trim() ? words(owners.value) : undefined
  if (kind === 'name' && rest.length)
    return {kind: 'name', pattern: rest.join(' '), ...(ownerList ? {owners: ownerList} : {})}
  if (ownerList)
    problems.push({
      message: 'image_owners only applies to "image = name PATTERN"',
      source: owners?.source,
      hint: 'remove image_owners, or look the image up by name',
    })
  if (kind === 'id' && rest.length === 1) return {kind: 'id', value: rest[0]}
  if (rest.length === 0 && kind.startsWith('ami-')) return {kind: 'id', value: kind}
  problems.push({
    message: `image "${value}" says neither which AMI nor which name`,
    source: image?.source,
    hint: 'write "image = id ami-0123456789abcdef0" or "image = name debian-12-amd64-*"',
  })
  return undefined
}

/** `20GB gp3`, `1TB`, `gp3`, `30GB unencrypted`: the root volume, or what is wrong with the text. */
export function parseDisk(text: string): DiskSpec | string {
  const disk: DiskSpec = {}
  for (const word of text
    .replace(/\b(\d+)\s+(gb|gib|g|tb|tib|t|mb|mib)\b/gi, '$1$2')
    .split(/[\s,]+/)
    .filter(Boolean)) {
    const size = /^(\d+)(gb|gib|g|tb|tib|t)?$/i.exec(word)
    if (size) {
      if (!size[2]) return `disk size "${word}" has no unit: write ${word}GB`
      if (disk.sizeGb !== undefined) return `disk "${text}" gives the size twice`
      disk.sizeGb = Number(size[1]) * (/^t/i.test(size[2]) ? 1024 : 1)
    } else if (/^\d+(\.\d+)?[a-z]*$/i.test(word)) {
      return `disk size "${word}" is not a whole number of GB or TB (EBS volumes are sized in GB)`
    } else if ((ROOT_VOLUME_TYPES as readonly string[]).includes(word.toLowerCase())) {
      if (disk.type !== undefined) return `disk "${text}" gives the type twice`
      disk.type = word.toLowerCase() as RootVolumeType
    } else if (/^(io1|io2|st1|sc1)$/i.test(word)) {
      return /^io/i.test(word)
        ? `disk type ${word} needs provisioned IOPS, which nodeset does not set: use gp3 (3000 IOPS and more)`
        : `disk type ${word} cannot be a root volume`
    } else if (/^(unencrypted|encrypted)$/i.test(word)) {
      disk.encrypted = word.toLowerCase() === 'encrypted'
    } else return `disk "${text}": "${word}" is neither a size, a volume type nor unencrypted`
  }
  return disk
}

function words(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean)
}

function resolvePath(file: string, source: Source | undefined): string {
  if (file === '~' || file.startsWith('~/')) return path.join(os.homedir(), file.slice(1))
  return path.resolve(source ? path.dirname(source.file) : process.cwd(), file)
}
