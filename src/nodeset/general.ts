/** `[general]`: the deployment's name, base domain, /etc/hosts management, config server, boot timeout, services. */
import path from 'node:path'
import type {MergedSection} from './merge.js'
import type {Reader} from './reader.js'
import type {GeneralSpec} from './types.js'
import {boolProblem, durationProblem, isValidHostname, parseBool, parseDuration} from './values.js'

const GENERAL_KEYS = [
  'name',
  'base_domain',
  'set_etc_hosts',
  'extends',
  'config_server',
  'boot_timeout',
  'services_dir',
]

export function readGeneral(r: Reader, section: MergedSection | undefined, file: string): GeneralSpec {
  const get = (key: string) => section?.values.get(key)
  if (section) r.unknownKeys(section, GENERAL_KEYS)
  const name = get('name') ? r.text(get('name')!) : path.basename(file).replace(/\.conf$/, '')
  if (get('name') && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    r.problem(
      `name "${name}" is not a valid deployment name`,
      get('name')!,
      'use letters, digits, ".", "_" and "-" (up to 63), starting with a letter or digit',
    )
  }
  let baseDomain: string | undefined
  if (get('base_domain')) {
    baseDomain = r.text(get('base_domain')!)
    if (!isValidHostname(baseDomain))
      r.problem(
        `base_domain "${baseDomain}" is not a valid domain name`,
        get('base_domain')!,
        'use labels of letters, digits and "-", separated by dots, e.g. foobar.com',
      )
  }
  let setEtcHosts = true
  if (get('set_etc_hosts')) {
    const b = parseBool(r.text(get('set_etc_hosts')!))
    if (b === undefined) {
      const p = boolProblem('set_etc_hosts', r.text(get('set_etc_hosts')!))
      r.problem(p.message, get('set_etc_hosts')!, p.hint)
    } else setEtcHosts = b
  }
  let configServer = 'embedded'
  if (get('config_server')) {
    configServer = r.text(get('config_server')!)
    if (configServer !== 'embedded' && !/^https?:\/\/[^\s/]+/.test(configServer)) {
      r.problem(
        `config_server must be "embedded" or an http(s) URL, not "${configServer}"`,
        get('config_server')!,
        'e.g. config_server = https://config.example.com:8443',
      )
    }
  }
  let bootTimeoutSec = 900
  if (get('boot_timeout')) {
    const text = r.text(get('boot_timeout')!)
    const d = parseDuration(text)
    if (d === undefined || d <= 0) {
      const p = durationProblem('boot_timeout', text)
      r.problem(d === 0 ? 'boot_timeout must be longer than 0' : p.message, get('boot_timeout')!, p.hint)
    } else bootTimeoutSec = d
  }
  const servicesDirs = get('services_dir')
    ? r
        .text(get('services_dir')!)
        .split(/\s+/)
        .filter(Boolean)
        .map((d) => path.resolve(path.dirname(get('services_dir')!.source.file), d))
    : []
  return {name, baseDomain, setEtcHosts, configServer, bootTimeoutSec, servicesDirs}
}
