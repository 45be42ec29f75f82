/**
 * Which `[provider]` keys each kind of provider reads. A key the chosen provider would ignore (another
 * provider's, or `username`/`secret` where credentials come from elsewhere) is refused with what to
 * write instead, so that nothing in the file silently does nothing.
 */
import type {Diagnostic} from '../core/diagnostics.js'
import type {Source} from '../core/source.js'
import {CREDENTIAL_KEYS, PROVIDER_KEYS_OF} from '../nodeset/provider.js'
import type {ProviderKind} from '../nodeset/types.js'

/** The keys each provider reads, besides `provider` itself. */
export const KEYS_OF = PROVIDER_KEYS_OF

/** Keys for credentials that only some file formats had; what each provider uses instead. */
const CREDENTIALS = CREDENTIAL_KEYS
const CREDENTIALS_HINT: Partial<Record<ProviderKind, (key: string) => string>> = {
  ec2: (key) =>
    `remove ${key}: the ec2 provider takes credentials from the AWS SDK's chain. Name a profile of ~/.aws/config ` +
    'with "profile = NAME" (or --profile), or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
  static: (key) =>
    key === 'username'
      ? 'write "ssh_user = NAME": static servers are logged in to over SSH'
      : `remove ${key}: static servers are logged in to with an SSH key; name its file with "ssh_key = PATH", or use your ssh-agent`,
}

export interface ProviderValue {
  value: string
  source?: Source
}

/** The keys of `settings` this kind of provider would ignore, each refused at its line. */
export function ignoredKeyProblems(
  kind: ProviderKind,
  settings: Record<string, ProviderValue | undefined>,
  fallback?: Source,
): Diagnostic[] {
  const problems: Diagnostic[] = []
  const seen = new Set<string>()
  for (const [key, setting] of Object.entries(settings)) {
    if (!setting || key === 'provider' || key === 'name' || KEYS_OF[kind].includes(key)) continue
    const source = setting.source ?? fallback
    // secret_file fills `secret` at the same line: one problem for the line.
    const at = source ? `${source.file}:${source.line}` : key
    if (seen.has(at)) continue
    seen.add(at)
    if (CREDENTIALS.includes(key)) {
      const hint = CREDENTIALS_HINT[kind]
      if (hint)
        problems.push({
          message: `the ${kind} provider does not use ${key === 'secret' && settings.secret_file ? 'secret_file' : key}`,
          source,
          hint: hint(key === 'secret' && settings.secret_file ? 'secret_file' : key),
        })
      continue
    }
    const owners = (Object.keys(KEYS_OF) as ProviderKind[]).filter((k) => KEYS_OF[k].includes(key))
    if (owners.length === 0) continue
    problems.push({
      message: `${key} is a key of the ${owners.join(' and ')} provider${owners.length > 1 ? 's' : ''}: the ${kind} provider does not read it`,
      source,
      hint: `remove it; the ${kind} provider reads ${KEYS_OF[kind].join(', ')}`,
    })
  }
  return problems
}
