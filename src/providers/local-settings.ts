/** The local provider's `[provider]` settings: `subnet`, `bridge` and `boot`, checked before anything is made. */
import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import type {Nodeset} from '../nodeset/types.js'
import {bridgeNameProblem, parseSubnet} from './local-network.js'
import {ignoredKeyProblems} from './provider-keys.js'

export interface LocalSettings {
  subnet?: string
  bridge?: string
  /** `fast` (the default: a namespace with its own sshd) or `systemd` (a real boot of a Debian image). */
  boot?: 'fast' | 'systemd'
}

const BOOT_MODES = ['fast', 'systemd'] as const

/** Read the settings. Throws DiagnosticsError with every problem and its file:line. */
export function localSettings(nodeset: Nodeset): LocalSettings {
  const settings = nodeset.provider.settings
  const text = (key: string) => settings[key]?.value.trim() || undefined
  const problems: Diagnostic[] = ignoredKeyProblems('local', settings, nodeset.provider.source)
  const subnet = text('subnet')
  if (subnet !== undefined) {
    try {
      parseSubnet(subnet)
    } catch (error) {
      problems.push({
        message: (error as Error).message,
        source: settings.subnet.source,
        hint: 'write subnet = 10.77.0.0/24, a network no other interface of this machine uses',
      })
    }
  }
  const bridge = text('bridge')
  const badBridge = bridge === undefined ? undefined : bridgeNameProblem(bridge)
  if (badBridge)
    problems.push({
      message: badBridge,
      source: settings.bridge.source,
      hint: 'remove bridge to use the name derived from the deployment',
    })
  const boot = text('boot')
  if (boot !== undefined && !(BOOT_MODES as readonly string[]).includes(boot))
    problems.push({
      message: `boot = ${boot} is not a boot mode of the local provider`,
      source: settings.boot.source,
      hint: 'write boot = fast (the default) or boot = systemd (each node boots a Debian image with systemd and cloud-init)',
    })
  if (problems.length > 0) throw new DiagnosticsError(problems)
  return {subnet, bridge, ...(boot ? {boot: boot as LocalSettings['boot']} : {})}
}
