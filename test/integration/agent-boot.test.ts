/**
 * The agent as a boot runs it, against the real config server on loopback, every path moved under a
 * fake root (NODESET_AGENT_ROOT): the rendered user data under dash returns while the agent it
 * started keeps waiting; the agent narrates on the console; the facts it finds on the node (sshd_port,
 * OS release, CPUs, memory, the operator's facts.d scripts) reach the config server and another
 * node's configuration.
 */
import {execFileSync, spawn} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir, totalmem} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ConfigServerClient} from '../../src/configserver/client.js'
import {type RunningConfigServer, startConfigServer} from '../../src/configserver/server.js'
import {renderUserData} from '../../src/providers/userdata.js'

const DASH = ['/usr/bin/dash', '/bin/dash'].find((path) => existsSync(path))
const work = mkdtempSync(join(tmpdir(), 'nodeset-agent-boot-'))
const DEPLOYMENT = 'boot'
const DB = 'db.boot.test'
const APP = 'app.boot.test'
let server: RunningConfigServer
let admin: ConfigServerClient
let tokens: Record<string, string>

interface Root {
  dir: string
  script: string
}

/** A fake node root: host keys, sshd_config, os-release, optionally a console and facts.d scripts. */
function nodeRoot(name: string, token: string, opts: {console?: boolean; facts?: Record<string, string>} = {}): Root {
  const dir = join(work, name)
  mkdirSync(join(dir, 'etc/ssh'), {recursive: true})
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'etc/ssh/ssh_host_ed25519_key')])
  writeFileSync(join(dir, 'etc/ssh/sshd_config'), 'ListenAddress 127.0.0.1:2222\nListenAddress [::1]:2200\n')
  writeFileSync(
    join(dir, 'etc/os-release'),
    'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
  )
  writeFileSync(join(dir, 'etc/hosts'), '127.0.0.1 localhost\n')
  if (opts.console) {
    mkdirSync(join(dir, 'dev'))
    writeFileSync(join(dir, 'dev/console'), '')
  }
  for (const [file, text] of Object.entries(opts.facts ?? {})) {
    mkdirSync(join(dir, 'etc/nodeset/facts.d'), {recursive: true})
    writeFileSync(join(dir, 'etc/nodeset/facts.d', file), text)
    if (!file.endsWith('.txt')) chmodSync(join(dir, 'etc/nodeset/facts.d', file), 0o755)
  }
  const script = join(work, `${name}.sh`)
  writeFileSync(script, renderUserData({deployment: DEPLOYMENT, node: name, token, serverUrl: server.url}), {
    mode: 0o700,
  })
  return {dir, script}
}

/** Run the user data as cloud-init does (no argument), or with `run`; resolves with its exit code and stderr. */
function boot(root: Root, ...args: string[]): Promise<{code: number; stderr: string}> {
  const child = spawn(DASH!, [root.script, ...args], {
    env: {PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', NODESET_AGENT_ROOT: root.dir},
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  return new Promise((resolve) => child.on('close', (code) => resolve({code: code ?? -1, stderr})))
}

const read = (root: Root, path: string): string =>
  existsSync(join(root.dir, path)) ? readFileSync(join(root.dir, path), 'utf8') : ''
const agentPid = (root: Root): number => Number(read(root, 'var/lib/nodeset/agent.lock/pid').trim())
const alive = (pid: number): boolean => {
  if (!pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !check(); await sleep(50))
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
}

const roots: Root[] = []

beforeAll(async () => {
  server = await startConfigServer({stateDir: join(work, 'server'), listen: {host: '127.0.0.1', port: 0}})
  admin = new ConfigServerClient({url: server.url, deployment: DEPLOYMENT, token: server.adminToken})
  ;({tokens} = await admin.register({
    instances: [
      {id: DB, role: 'service:mysql', services: [{name: 'mysql'}]},
      {
        id: APP,
        role: 'appserver',
        services: [
          {
            name: 'web',
            params: {
              db_host: {template: '{{ip "service:mysql"}}'},
              db_rack: {template: '{{fact "service:mysql" "rack"}}'},
              db_ssh: {template: '{{fact "service:mysql" "sshd_port"}}'},
            },
          },
        ],
      },
    ],
  }))
})

afterAll(async () => {
  for (const root of roots) {
    const pid = agentPid(root)
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL')
  }
  admin?.close()
  await server?.close()
  rmSync(work, {recursive: true, force: true})
})

describe.skipIf(!DASH && process.env.CI !== 'true')('the agent at boot', () => {
  let app: Root
  let db: Root

  it('returns to cloud-init at once, while the agent it started keeps waiting and says so on the console', async () => {
    app = nodeRoot(APP, tokens[APP], {console: true})
    roots.push(app)
    const launched = await boot(app)
    expect(launched).toEqual({code: 0, stderr: ''})
    // The agent runs on, in the background: it phoned home and waits for the database.
    await until('the agent phoned home', () => existsSync(join(app.dir, 'etc/nodeset/phoned-home')))
    await until('the agent says what it waits on', () => read(app, 'dev/console').includes('waiting on'))
    const pid = agentPid(app)
    expect(alive(pid)).toBe(true)
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)).toEqual([
      '/bin/sh',
      join(app.dir, 'var/lib/nodeset/agent.sh'),
      'run',
    ])
    expect(read(app, 'etc/nodeset/agent.state')).toBe('waiting')
    expect(read(app, 'etc/nodeset/config.json')).toBe('')
    expect(read(app, 'var/lib/nodeset/agent.sh')).toBe(readFileSync(app.script, 'utf8'))
    const console = read(app, 'dev/console').split('\n')
    expect(console[0]).toBe(`nodeset-agent: starting for ${APP} of ${DEPLOYMENT} (log: /var/log/nodeset-agent.log)`)
    expect(console[1]).toBe(`nodeset-agent: phoned home to ${server.url} as 127.0.0.1`)
    expect(console[2]).toMatch(/^nodeset-agent: waiting on db\.boot\.test (ip|rack|sshd_port) \(and 2 more\)$/)
    // The log has each line too, with its time.
    expect(read(app, 'var/log/nodeset-agent.log')).toMatch(/Z nodeset-agent\[\d+\]: phoned home to /)
  })

  it("the database's own facts, facts.d included, reach the server and the app's configuration", async () => {
    db = nodeRoot(DB, tokens[DB], {
      facts: {
        rack: '#!/bin/sh\necho rack=r42\necho "not a fact"\necho hostname=forged\necho \'quote=it\'"\'"\'s "q" \\\\ x\'\necho rack=second\n',
        broken: '#!/bin/sh\necho zone=z1\nexit 3\n',
        'notes.txt': 'zone=not-run\n',
        'zz-many': '#!/bin/sh\ni=1; while [ $i -le 70 ]; do echo k$i=v$i; i=$((i + 1)); done\n',
      },
    })
    roots.push(db)
    expect((await boot(db)).code).toBe(0)
    await until('the app is configured', () => read(app, 'etc/nodeset/agent.state') === 'complete')

    const facts = (await admin.state()).instances.find((i) => i.id === DB)!.facts
    expect(facts).toMatchObject({
      sshd_port: 2222,
      os_id: 'debian',
      os_version: '12',
      os_name: 'Debian GNU/Linux 12 (bookworm)',
      memory_mb: Math.floor(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) / 1024),
      rack: 'r42',
      quote: `it's "q" \\ x`,
      k62: 'v62',
    })
    expect(facts.memory_mb).toBeLessThanOrEqual(totalmem() / 2 ** 20)
    expect(facts.cpu_count).toBe(Number(execFileSync('getconf', ['_NPROCESSORS_ONLN']).toString()))
    // Not run, failed, over the 64 facts, or built in: left out.
    for (const key of ['zone', 'k63', 'k70']) expect(facts).not.toHaveProperty(key)
    expect(facts.hostname).not.toBe('forged')
    expect(read(db, 'var/log/nodeset-agent.log')).toMatch(/facts\.d\/broken failed \(exit 3\): left out/)
    expect(read(db, 'var/log/nodeset-agent.log')).toMatch(/facts\.d: 8 facts over the limits left out/)

    const config = JSON.parse(read(app, 'etc/nodeset/config.json')) as {
      services: Record<string, {params: Record<string, string>}>
    }
    expect(config.services.web.params).toEqual({db_host: '127.0.0.1', db_rack: 'r42', db_ssh: '2222'})
    expect(read(app, 'dev/console').trim().split('\n').pop()).toBe('nodeset-agent: configuration complete')
    await until('the agents are done', () => !alive(agentPid(app)) && !alive(agentPid(db)))
  })

  it('says why it failed, in one line: on the console when there is one, else on stderr', async () => {
    // A node the server does not know (the admin token passes auth): 404.
    const ghost = nodeRoot('ghost.boot.test', server.adminToken)
    roots.push(ghost)
    const run = await boot(ghost, 'run')
    expect(run.code).toBe(1)
    expect(run.stderr.trim().split('\n')).toEqual([
      'nodeset-agent: failed: phoning home: the config server does not know ghost.boot.test in deployment boot (HTTP 404): run nodeset create-node',
    ])

    // Something else runs this agent (no-boot-hook): it works in the foreground and keeps off the console.
    writeFileSync(join(ghost.dir, 'etc/nodeset/no-boot-hook'), '')
    mkdirSync(join(ghost.dir, 'dev'))
    writeFileSync(join(ghost.dir, 'dev/console'), '')
    const managed = await boot(ghost)
    expect(managed.code).toBe(1)
    expect(managed.stderr).toMatch(/^nodeset-agent: failed: phoning home: .*HTTP 404/)
    expect(read(ghost, 'dev/console')).toBe('')
  })
})
