import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {applyOperatorEtcHosts} from '../../src/operations/etchosts.js'

describe('setup-node --etc-hosts on the operator machine', () => {
  it("writes the deployment's block, replaces it on the next run and keeps every other line", () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-hosts-')), 'hosts')
    fs.writeFileSync(file, '127.0.0.1 localhost\n192.0.2.1 printer\n')
    const instance = (id: string, ip: string | undefined, role = 'appserver', index = 1) => ({
      id,
      role,
      index,
      facts: ip ? {ip} : {},
      outputs: {},
      services: {},
    })
    applyOperatorEtcHosts(
      'shop',
      [
        instance('app1.shop.test', '10.0.0.2'),
        instance('db.shop.test', '10.0.0.3', 'service:mysql'),
        instance('late.shop.test', undefined, 'worker'),
      ],
      file,
    )
    expect(fs.readFileSync(file, 'utf8')).toBe(
      '127.0.0.1 localhost\n192.0.2.1 printer\n# BEGIN nodeset shop\n10.0.0.2 app1.shop.test app1\n10.0.0.3 db.shop.test db\n# END nodeset shop\n',
    )
    applyOperatorEtcHosts('shop', [instance('app1.shop.test', '10.0.0.9')], file)
    expect(fs.readFileSync(file, 'utf8')).toBe(
      '127.0.0.1 localhost\n192.0.2.1 printer\n# BEGIN nodeset shop\n10.0.0.9 app1.shop.test app1\n# END nodeset shop\n',
    )
  })
})
