/** The layer rule of eslint.config.js: an upward import fails the lint, a downward one passes. */
import path from 'node:path'
import {ESLint} from 'eslint'
import {describe, expect, it} from 'vitest'

const root = path.resolve(__dirname, '../..')
const eslint = new ESLint({cwd: root})

async function lint(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, {filePath: path.join(root, file)})
  return result.messages.map((m) => `${m.ruleId}: ${m.message}`)
}

describe('layers', () => {
  it('refuses an import that goes up the layers', async () => {
    const messages = await lint(
      'src/core/probe.ts',
      "import {open} from '../operations/opened.js'\nexport const o = open\n",
    )
    expect(messages).toEqual([
      'boundaries/dependencies: core may import only from layers below it (eslint.config.js LAYERS); operations is above it',
    ])
    expect(
      await lint('src/plan/probe.ts', "import {connect} from '../ssh/ssh.js'\nexport const c = connect\n"),
    ).toHaveLength(1)
  }, 60_000)

  it('allows an import from a layer below', async () => {
    expect(
      await lint(
        'src/operations/probe.ts',
        "import {UserError} from '../core/errors.js'\nexport const e = UserError\n",
      ),
    ).toEqual([])
  }, 60_000)

  it('refuses a test that imports a command', async () => {
    const messages = await lint(
      'test/unit/probe.test.ts',
      "import Plan from '../../src/commands/plan.js'\nexport const p = Plan\n",
    )
    expect(messages.join('\n')).toContain('no-restricted-imports')
  }, 60_000)
})
