import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {checkAppAgainstNodeset, parseAppIni, readAppConfig, type NodesetOffer} from '../../src/deploy/appini.js'
import {DiagnosticsError, formatDiagnostic} from '../../src/core/diagnostics.js'

const FILE = '/apps/blog/app.ini'
const offer: NodesetOffer = {
  nodesetFile: 'foobar.conf',
  apps: ['blog', 'shop'],
  services: ['appserver', 'mysql', 'balancer'],
}

function problems(text: string): string[] {
  return parseAppIni(text, FILE).problems.map(formatDiagnostic)
}

describe('app.ini', () => {
  it('reads the hello app of the examples', () => {
    const dir = path.resolve(__dirname, '../../examples/hello-app')
    const config = readAppConfig(dir, {nodesetFile: 'local.conf', apps: ['hello'], services: ['mysql']})
    expect(config).toMatchObject({
      appName: 'hello',
      command: 'node server.js',
      services: [{name: 'mysql'}],
      updateFetch: [{kind: 'command', command: 'node migrate.js'}],
      healthCheck: '/health',
      keepReleases: 5,
    })
    expect(config.appNameSource).toEqual({file: path.join(dir, 'app.ini'), line: 3})
  })

  it('gives defaults and reads update_fetch lines as requests or commands, silverlining style', () => {
    const {config, problems} = parseAppIni(
      '[production]\napp_name = blog\ncommand = ./run --port $PORT\nupdate_fetch =\n  /setup-stuff\n  script:bin/migrate --all\n  python manage.py migrate\n',
      FILE,
    )
    expect(problems).toEqual([])
    expect(config).toMatchObject({healthCheck: '/', keepReleases: 5, services: []})
    expect(config!.updateFetch).toEqual([
      {kind: 'request', path: '/setup-stuff'},
      {kind: 'command', command: 'bin/migrate --all'},
      {kind: 'command', command: 'python manage.py migrate'},
    ])
  })

  it('says what is missing, with the line and what to write', () => {
    expect(problems('[production]\nhealth_check = /health\n')).toEqual([
      `${FILE}:1: app_name is missing\n  hint: name the app as the nodeset file's locations do: app_name = blog`,
      `${FILE}:1: command is missing\n  hint: say how to start the app, e.g. command = node server.js (it must listen on $PORT)`,
    ])
    expect(problems('app_name = blog\n')).toEqual([
      `${FILE}:1: "app_name" is set before any [section]\n  hint: put it under a section such as [general]`,
      `${FILE}:1: there is no [production] section\n  hint: start the file with [production], then app_name = … and command = …`,
    ])
  })

  it('suggests the key meant by a misspelt one, and what replaces a silverlining key', () => {
    const found = problems(
      '[production]\napp_name = blog\ncomand = node server.js\nhealth_chek = /\nrunner = app.py#application\nservice.mysql =\nservice.mysql =\n',
    )
    expect(found).toContain(`${FILE}:3: unknown key "comand"\n  hint: did you mean "command"?`)
    expect(found).toContain(`${FILE}:4: unknown key "health_chek"\n  hint: did you mean "health_check"?`)
    expect(found).toContain(
      `${FILE}:5: runner is a silverlining setting nodeset does not use\n  hint: nodeset starts any process: set "command" to what starts the app (it gets $PORT)`,
    )
    expect(found).toContain(`${FILE}:7: service mysql is listed twice\n  hint: keep one service.NAME line per service`)
    expect(found.some((p) => p.includes('command is missing'))).toBe(true)
  })

  it('refuses values it cannot use, each at its own line', () => {
    const found = problems(
      '[production]\napp_name = my blog\ncommand = node server.js\nhealth_check = health\nkeep_releases = 1\nupdate_fetch = http://localhost/migrate\n[devel]\n',
    )
    expect(found).toEqual([
      `${FILE}:7: section [devel] is not read\n  hint: put the app's settings under [production]`,
      `${FILE}:2: app_name "my blog" is not a valid app name\n  hint: use 1-32 letters, digits, "_" and "-", starting with a letter or digit (it names the database and the directories)`,
      `${FILE}:6: update_fetch "http://localhost/migrate" is a full URL\n  hint: give only the path (e.g. /setup-stuff): it is requested from the app on the node it was just activated on`,
      `${FILE}:4: health_check "health" is not a URL path\n  hint: give the path the app answers 2xx on when it is ready, e.g. health_check = /health`,
      `${FILE}:5: keep_releases "1" is not a whole number from 2 to 1000\n  hint: the current release and the one before it are always kept; keep_releases = 5 keeps three more`,
    ])
    expect(problems('[production]\napp_name = blog\napp_name = shop\ncommand = x\n[prodution]\n')).toEqual([
      `${FILE}:5: section [prodution] is not read\n  hint: did you mean [production]?`,
      `${FILE}:3: app_name is set twice (first at line 2)\n  hint: keep one of them`,
    ])
  })

  it('checks the app against the nodeset: a location must name it, and a node must run each service it needs', () => {
    const {config} = parseAppIni(
      '[production]\napp_name = blgo\ncommand = x\nservice.mysql =\nservice.postgres =\nservice.mysq =\n',
      FILE,
    )
    const found = checkAppAgainstNodeset(config!, offer).map(formatDiagnostic)
    expect(found).toEqual([
      `${FILE}:2: app "blgo" is not in the locations of foobar.conf\n  hint: did you mean "blog"?`,
      `${FILE}:5: the app needs service postgres, and no node of foobar.conf runs it\n  hint: add a [service:postgres] section to foobar.conf and run create-node and setup-node, or remove the line`,
      `${FILE}:6: the app needs service mysq, and no node of foobar.conf runs it\n  hint: did you mean service.mysql?`,
    ])
    const {config: other} = parseAppIni('[production]\napp_name = wiki\ncommand = x\n', FILE)
    expect(checkAppAgainstNodeset(other!, offer).map(formatDiagnostic)).toEqual([
      `${FILE}:2: app "wiki" is not in the locations of foobar.conf\n  hint: add a line "http://HOST/ wiki" to locations in [appserver] (it names blog, shop)`,
    ])
  })

  it('refuses a directory without app.ini, and lists every problem of a bad one at once', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-appini-'))
    try {
      expect(() => readAppConfig(path.join(dir, 'nope'), offer)).toThrow(/nope is not a directory/)
      expect(() => readAppConfig(dir, offer)).toThrow(/app\.ini does not exist/)
      fs.writeFileSync(path.join(dir, 'app.ini'), '[production]\napp_name = blog\nkeep_releases = many\n')
      let caught: unknown
      try {
        readAppConfig(dir, offer)
      } catch (error) {
        caught = error
      }
      expect(caught).toBeInstanceOf(DiagnosticsError)
      expect((caught as DiagnosticsError).diagnostics.map((d) => [d.source?.line, d.message])).toEqual([
        [1, 'command is missing'],
        [3, 'keep_releases "many" is not a whole number from 2 to 1000'],
      ])
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
