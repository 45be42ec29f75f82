import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {readNodeset} from '../../src/nodeset/read.js'
import {openConfigServer} from '../../src/operations/connect.js'
import {Workspace} from '../../src/operations/workspace.js'

describe('the embedded config server', () => {
  it('keeps its port from run to run, beside a command of the same deployment too, and moves when something else took it', async () => {
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

    // Another command of this deployment holds the port (an `up` running): this one listens elsewhere
    // for itself, and the nodes keep being told the saved port, where that command answers them.
    const holder = await openConfigServer(nodeset, workspace, '127.0.0.1')
    await holder.client.register({instances: [{id: 'a1.conn', role: 'a', index: 1, services: []}]})
    try {
      const beside = await openConfigServer(nodeset, workspace, '127.0.0.1')
      expect(Number(new URL(beside.nodeUrl).port)).toBe(port)
      expect((await beside.client.status()).instances.map((i) => i.id)).toEqual(['a1.conn'])
      expect(workspace.readSettings().configServerPort).toBe(port)
      await beside.close()
    } finally {
      await holder.close()
    }

    // Something else took it: the next nodes are told a new port.
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
