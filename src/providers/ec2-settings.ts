import os from 'node:os'
import path from 'node:path'

import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import {parseSize} from '../nodeset/read.js'
import type {Source} from '../core/source.js'
import {ec2OptionProblems, type Ec2ProviderOptions, type ImageSpec} from './ec2.js'

/** A `[provider]` value as the nodeset reader gives it. */
export interface ProviderSetting {
  value: string
  source?: Source
}

export interface Ec2Settings {
  options: Ec2ProviderOptions
  /** Private key file for SSH (the `ssh_key` key), absolute; it must match the EC2 key pair `key_name`. */
  sshKey?: string
}

/**
 * `[provider]` keys → Ec2Provider options: region, profile, image (+ image_owners), size, key_name,
 * subnet, security_groups, ssh_user, ssh_key. Every problem is reported at once with its file:line.
 */
export function ec2Settings(settings: Record<string, ProviderSetting | undefined>): Ec2Settings {
  const problems: Diagnostic[] = []
  const text = (key: string) => settings[key]?.value.trim() || undefined
  const image = parseImage(settings.image, settings.image_owners, problems)
  const options: Ec2ProviderOptions = {image: image ?? {kind: 'id', value: 'ami-00000000'}}
  if (text('region')) options.region = text('region')
  if (text('profile')) options.profile = text('profile')
  if (text('key_name')) options.keyName = text('key_name')
  if (text('subnet')) options.subnetId = text('subnet')
  if (text('ssh_user')) options.sshUser = text('ssh_user')
  if (text('security_groups')) options.securityGroupIds = words(text('security_groups')!)
  if (text('size')) {
    const size = parseSize(text('size')!)
    if (size) options.size = size
    else
      problems.push({
        message: `size "${text('size')}" is not a size`,
        source: settings.size?.source,
        hint: 'write "size = id t3.small", "size = name t3.small" or "size = ram 2GB"',
      })
  }
  if (image) {
    for (const p of ec2OptionProblems(options))
      problems.push({message: p.message, source: settings[p.setting]?.source, hint: p.hint})
  }
  if (problems.length) throw new DiagnosticsError(problems)
  return {options, ...(text('ssh_key') ? {sshKey: resolvePath(text('ssh_key')!, settings.ssh_key?.source)} : {})}
}

/** `id ami-…`, `name PATTERN`, or a bare `ami-…`. */
export function parseImage(
  image: ProviderSetting | undefined,
  owners: ProviderSetting | undefined,
  problems: Diagnostic[],
): ImageSpec | undefined {
  const value = image?.value.trim()
  if (!value) {
    problems.push({
      message: 'the ec2 provider needs an image',
      source: image?.source,
      hint: 'add "image = id ami-…" or "image = name debian-12-amd64-*" with "image_owners = 136693071363"',
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

function words(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean)
}

function resolvePath(file: string, source: Source | undefined): string {
  if (file === '~' || file.startsWith('~/')) return path.join(os.homedir(), file.slice(1))
  return path.resolve(source ? path.dirname(source.file) : process.cwd(), file)
}
