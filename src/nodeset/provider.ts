/** `[provider]`, with `name = X` looked up as `[provider:X]` in ~/.nodeset.conf (the file's own keys win). */
import os from 'node:os'
import path from 'node:path'
import {didYouMean} from '../core/diagnostics.js'
import type {Source} from '../core/source.js'
import {outcome} from './files.js'
import {parseIni} from './ini.js'
import type {MergedSection} from './merge.js'
import type {Reader} from './reader.js'
import type {ProviderKind, ProviderSpec, Value} from './types.js'

/**
 * The `[provider]` keys each kind of provider reads, besides `provider` and `name`: part of the file
 * format, so the reader knows every key; each provider refuses the keys it would ignore.
 */
export const PROVIDER_KEYS_OF: Record<ProviderKind, string[]> = {
  ec2: [
    ...['region', 'profile', 'image', 'image_owners', 'size', 'key_name', 'subnet', 'security_groups'],
    ...['ssh_user', 'ssh_key', 'iam_instance_profile', 'disk', 'associate_public_ip', 'imds', 'imds_hop_limit'],
  ],
  local: ['subnet', 'bridge', 'boot'],
  static: ['hosts', 'ssh_user', 'ssh_key'],
}

/** Credential keys older file formats had; no provider reads them, each says what to use instead. */
export const CREDENTIAL_KEYS = ['username', 'secret', 'secret_file']

const PROVIDER_KEYS = [...new Set(['name', 'provider', ...CREDENTIAL_KEYS, ...Object.values(PROVIDER_KEYS_OF).flat()])]
const PROVIDERS: ProviderKind[] = ['ec2', 'local', 'static']

export function readProvider(r: Reader, section: MergedSection | undefined, file: string): ProviderSpec {
  const source = section?.source ?? {file, line: 1}
  const settings: Record<string, Value> = {}
  if (!section) {
    r.problem(
      'no [provider] section',
      {file, line: 1},
      'add [provider] with "provider = local" (nodes on this machine), "ec2" or "static"',
    )
    return {kind: 'local', settings, source}
  }
  r.unknownKeys(section, PROVIDER_KEYS)
  const nameValue = section.values.get('name')
  if (nameValue) lookupProvider(r, r.text(nameValue), nameValue.source, settings)
  for (const [key, v] of section.values) if (key !== 'name') settings[key] = r.value(v)
  const secretFile = settings.secret_file
  if (secretFile) {
    const filePath = path.resolve(path.dirname(secretFile.source.file), secretFile.value)
    const {text: content, problem} = outcome(r.io.readFile(filePath))
    if (content === undefined)
      r.problem(
        `secret_file ${secretFile.value}: ${problem ? `it ${problem}` : 'cannot read it'}`,
        secretFile.source,
        'check the path (relative paths start at the nodeset file) and its permissions',
      )
    else {
      settings.secret = {value: content.trim(), source: secretFile.source}
    }
  }
  if (settings.secret?.value) r.secrets.add(settings.secret.value)
  const kind = settings.provider?.value
  if (!kind) {
    r.problem(
      '[provider] does not say which provider',
      source,
      `set "provider = local", "ec2" or "static"${nameValue ? `, or in [provider:${r.text(nameValue)}] of ~/.nodeset.conf` : ''}`,
    )
    return {kind: 'local', settings, source}
  }
  if (!PROVIDERS.includes(kind as ProviderKind)) {
    const guess = didYouMean(kind, PROVIDERS)
    r.problem(
      `unknown provider "${kind}"`,
      settings.provider.source,
      guess ? `did you mean "${guess}"?` : `use one of: ${PROVIDERS.join(', ')}`,
    )
    return {kind: 'local', settings, source}
  }
  return {kind: kind as ProviderKind, settings, source}
}

/** `[provider] name = X` takes the keys of `[provider:X]` in ~/.nodeset.conf; the file's own keys win. */
function lookupProvider(r: Reader, name: string, at: Source, settings: Record<string, Value>): void {
  const userFile = r.io.env.NODESET_CONFIG ?? path.join(r.io.env.HOME ?? os.homedir(), '.nodeset.conf')
  const {text, problem} = outcome(r.io.readFile(userFile))
  if (text === undefined) {
    r.problem(
      `provider "${name}" is looked up in ${userFile}, which ${problem ?? 'does not exist'}`,
      at,
      `create it with a [provider:${name}] section, or set "provider = …" here`,
    )
    return
  }
  const raw = parseIni(text, userFile)
  r.problems.push(...raw.problems)
  const section = raw.sections.find((s) => s.name === `provider:${name}`)
  if (!section) {
    const names = raw.sections
      .filter((s) => s.name.startsWith('provider:'))
      .map((s) => s.name.slice('provider:'.length))
    const guess = didYouMean(name, names)
    r.problem(
      `${userFile} has no [provider:${name}]`,
      at,
      guess ? `did you mean "${guess}"?` : `it defines: ${names.join(', ') || 'no providers'}`,
    )
    return
  }
  for (const entry of section.entries) {
    if (!PROVIDER_KEYS.includes(entry.key) || entry.key === 'name') {
      r.problem(
        `unknown key "${entry.key}" in [provider:${name}]`,
        {file: userFile, line: entry.line},
        `known keys: ${PROVIDER_KEYS.filter((k) => k !== 'name').join(', ')}`,
      )
      continue
    }
    settings[entry.key] = {value: entry.value, source: {file: userFile, line: entry.line}}
  }
}
