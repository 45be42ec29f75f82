import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {readNodeset} from '../../src/nodeset/read.js'
import {openConfigServer} from '../../src/operations/connect.js'
import {Workspace} from '../../src/operations/workspace.js'

describe('the embedded config server', () => {
  it('keeps its port from run to run, and moves to a free one when that port is taken', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-connect-'))
    const file = path.join(dir, 'c.conf')
    fs.writeFileSync(file, '[general]\nname = conn\n[provider]\nprovider = local\n[role:a]\n')
    const {nodeset} = readNodeset(file)
    const workspace = new Workspace(file, 'conn').ensure()

    const first = await openConfigServer(nodeset, workspace, '127.0.0.1')
    const port = Number(new URL(first.nodeUrl).port)
    await first.close()
    const again = await openConfigServer(nodeset, workspace, '127.0.0.1')
    expect(Number(new URL(again.nodeUrl).port)).toBe(port)
    await again.close()

    const squatter = net.createServer()
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve))
    try {
      const moved = await openConfigServer(nodeset, workspace, '127.0.0.1')
      const newPort = Number(new URL(moved.nodeUrl).port)
      expect(newPort).not.toBe(port)
      expect(workspace.readSettings().configServerPort).toBe(newPort)
      await moved.close()
    } finally {
      squatter.close()
    }
  })
})
