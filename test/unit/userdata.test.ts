import {describe, expect, it} from 'vitest'
import {hostsMergeScript} from '../../src/core/hostsblock.js'
import {
  checkUserDataSize,
  compactScript,
  renderUserData,
  USER_DATA_LIMIT,
  type UserDataOptions,
} from '../../src/providers/userdata.js'

const TOKEN = 'tok_Zq8v1-Xy2.Wk3~Lm4+Np5/Qr6='
const base: UserDataOptions = {
  deployment: 'foobar',
  node: 'app1.foobar.com',
  token: TOKEN,
  serverUrl: 'http://10.77.0.1:4000/',
}

/** Reads one sh word made of '…' segments and \x escapes (what shellQuote produces) the way sh does. */
function unquote(word: string): string {
  let out = ''
  for (let i = 0; i < word.length;) {
    if (word[i] === "'") {
      const end = word.indexOf("'", i + 1)
      if (end < 0) throw new Error(`unterminated quote in ${word}`)
      out += word.slice(i + 1, end)
      i = end + 1
    } else if (word[i] === '\\') {
      out += word[i + 1]
      i += 2
    } else {
      throw new Error(`unquoted character ${JSON.stringify(word[i])} in ${word}`)
    }
  }
  return out
}

/** The value assigned to VAR at the top of the script. */
function assigned(script: string, name: string): string {
  const line = script.split('\n').find((l) => l.startsWith(`${name}=`))
  if (!line) throw new Error(`no ${name}= line`)
  return line.slice(name.length + 1)
}

describe('renderUserData', () => {
  it('carries the identity, server and token as sh words', () => {
    const script = renderUserData({...base, bootDeadlineSec: 600})
    expect(script.startsWith('#!/bin/sh\n')).toBe(true)
    expect(unquote(assigned(script, 'DEPLOYMENT'))).toBe('foobar')
    expect(unquote(assigned(script, 'NODE'))).toBe('app1.foobar.com')
    expect(unquote(assigned(script, 'SERVER'))).toBe('http://10.77.0.1:4000')
    expect(unquote(assigned(script, 'TOKEN'))).toBe(TOKEN)
    expect(unquote(assigned(script, 'PIN'))).toBe('')
    expect(assigned(script, 'DEADLINE_SEC')).toBe('600')
  })

  it('merges its hosts block with the same script as the wiring step', () => {
    const script = renderUserData(base)
    expect(script).toContain(compactScript(hostsMergeScript('foobar')))
    expect(script).toContain('merge_hosts "$HOSTS" "$WORK/body" "$WORK/hosts"')
    expect(script).not.toContain('BEGIN nodeset $DEPLOYMENT')
  })

  it('as user data, makes itself a service and returns; `run` and no-boot-hook run it in the foreground', () => {
    const script = renderUserData(base)
    expect(script).toContain('[ "${1:-}" = run ] || [ -e "$ETC/no-boot-hook" ] || { launch && exit 0; }')
    expect(script).toContain('run="/bin/sh $LIB/agent.sh run"')
    expect(script).toContain('"ExecStart=$run"')
    expect(script).toContain('systemctl start --no-block nodeset-agent.service')
    expect(script).toMatch(/setsid nohup \/bin\/sh "\$LIB\/agent\.sh" run <\/dev\/null/)
  })

  it('waits an hour by default and long-polls the config', () => {
    const script = renderUserData(base)
    expect(assigned(script, 'DEADLINE_SEC')).toBe('3600')
    // The first ask answers at once (to say what the node waits on), the next ones long-poll.
    expect(script).toContain('request GET "/config?wait=$wait&roles=false"')
    expect(script).toMatch(/wait=0\n[\s\S]*then wait=60\n/)
    expect(script).toContain('/dev/urandom')
  })

  it('writes tokens only to the 0600 auth and token files, and every log line goes through redact', () => {
    const script = renderUserData(base)
    expect(script.split(TOKEN)).toHaveLength(2)
    const lines = script.split('\n')
    expect(lines.filter((l) => l.includes(TOKEN))).toEqual([`TOKEN='${TOKEN}'`])
    // The bootstrap token ($TOKEN) and the node token ($NODE_TOKEN) are used by the redaction, sent through
    // use_token to the 0600 auth file for curl/wget, and (the node token) stored in its 0600 file; never logged.
    const uses = lines.filter((l) => /\$(NODE_)?TOKEN\b/.test(l))
    expect(uses.length).toBeGreaterThan(5)
    for (const line of uses) {
      expect(line).not.toMatch(/\b(log|fail|echo|set_state)\b[^;|&]*\$(NODE_)?TOKEN\b|\$LOG|>&2/)
      if (line.includes('printf'))
        expect(line).toMatch(/^\s*printf '%s\\n' "\$NODE_TOKEN" \| write_atomic "\$NODE_TOKEN_FILE" 0600 /)
    }
    const headers = lines.filter((l) => l.includes('Bearer'))
    expect(headers).toHaveLength(2)
    for (const line of headers) expect(line).toMatch(/^\s*printf '[^']*Bearer %s"?\\n' "\$1" >"\$WORK\/auth"$/)
    const logFunction = script.slice(script.indexOf('log() {'), script.indexOf('}', script.indexOf('log() {')))
    expect(logFunction).toContain('$(redact "$*")')
    const redact = script.slice(script.indexOf('redact() {'), script.indexOf('\n}\n', script.indexOf('redact() {')))
    expect(redact).toContain('for secret in "$TOKEN" "$NODE_TOKEN"; do')
  })

  it('pins the server key and refuses a pin without https', () => {
    const pin = 'graGvViCLUyEQRmqEAIbqvPXIvITGvzjuvIxx/SxOYo='
    const script = renderUserData({...base, serverUrl: 'https://cs.example.com:8443', serverPubkeySha256: pin})
    expect(unquote(assigned(script, 'PIN'))).toBe(pin)
    expect(() => renderUserData({...base, serverPubkeySha256: pin})).toThrow(/needs an https:\/\/ server URL/)
    expect(() => renderUserData({...base, serverUrl: 'https://x', serverPubkeySha256: 'short'})).toThrow(
      /base64 sha256/,
    )
  })

  it('carries extra facts as JSON members', () => {
    const extraFacts = {sshd_port: '2222', note: `it's "quoted" \\ and $(not run)`}
    const script = renderUserData({...base, extraFacts})
    const members = unquote(assigned(script, 'EXTRA_FACTS'))
    expect(JSON.parse(`{"x":1${members}}`)).toEqual({x: 1, ...extraFacts})
  })

  it('refuses values it cannot carry safely, saying what is wrong and never echoing the token', () => {
    const badToken = 'abc\nAuthorization: x-injected'
    try {
      renderUserData({...base, token: badToken})
      expect.unreachable()
    } catch (error) {
      expect((error as Error).message).toMatch(/the token must be 16-1024 characters/)
      expect((error as Error).message).not.toContain('injected')
    }
    expect(() => renderUserData({...base, deployment: 'foo bar'})).toThrow(/deployment "foo bar" is not a valid id/)
    expect(() => renderUserData({...base, node: "app'1"})).toThrow(/node "app'1" is not a valid id/)
    expect(() => renderUserData({...base, serverUrl: 'ftp://x'})).toThrow(/must be http:\/\/ or https:\/\//)
    expect(() => renderUserData({...base, serverUrl: 'not a url'})).toThrow(/is not a URL/)
    expect(() => renderUserData({...base, serverUrl: 'http://u:p@x'})).toThrow(/user name or password/)
    expect(() => renderUserData({...base, extraFacts: {hostname: 'x'}})).toThrow(/extra fact hostname is built in/)
    expect(() => renderUserData({...base, extraFacts: {'bad key': 'x'}})).toThrow(/extra fact name "bad key"/)
    expect(() => renderUserData({...base, bootDeadlineSec: 5})).toThrow(/bootDeadlineSec must be/)
  })
})

describe('user data size', () => {
  it('accepts the limit and refuses one byte more, naming the node', () => {
    expect(() => checkUserDataSize('app1', 'x'.repeat(USER_DATA_LIMIT))).not.toThrow()
    expect(() => checkUserDataSize('app1', 'x'.repeat(USER_DATA_LIMIT + 1))).toThrow(
      /user data for app1 is 16385 bytes, over the 16384-byte limit/,
    )
    // Bytes, not characters.
    expect(() => checkUserDataSize('app1', 'é'.repeat(USER_DATA_LIMIT / 2 + 1))).toThrow(/16386 bytes/)
  })

  it('leaves room for facts, and refuses rendering when extra facts make it too big', () => {
    expect(Buffer.byteLength(renderUserData(base))).toBeLessThan(USER_DATA_LIMIT - 1536)
    expect(() => renderUserData({...base, extraFacts: {blob: 'x'.repeat(8000)}})).toThrow(
      /user data for app1.foobar.com is \d+ bytes/,
    )
  })
})

describe('compactScript', () => {
  it('drops comment lines, blank lines and indentation past the opening comment', () => {
    const text =
      "#!/bin/sh\n# what it is\n\n# a note\nf() {\n  echo '# kept'  # trailing kept\n\n    awk '\n      { print }'\n}\n"
    expect(compactScript(text)).toBe(
      "#!/bin/sh\n# what it is\nf() {\necho '# kept'  # trailing kept\nawk '\n{ print }'\n}\n",
    )
  })

  it('refuses a script with a heredoc, whose lines it would change', () => {
    expect(() => compactScript("#!/bin/sh\ncat <<'EOF'\n  # a line\nEOF\n")).toThrow(/heredoc/)
  })
})
