// hello's migration hook (update_fetch): records each run in the app's data directory, so you can
// see it ran exactly once per update. It fails when the release holds a file named FAIL_MIGRATION,
// or when HELLO_FAIL_MIGRATION=1, to show an update that rolls back.
import {appendFileSync, existsSync} from 'node:fs'
import path from 'node:path'

const env = process.env
if (existsSync('FAIL_MIGRATION') || env.HELLO_FAIL_MIGRATION === '1') {
  console.error(`migration of ${env.NODESET_RELEASE} failed on purpose (FAIL_MIGRATION)`)
  process.exit(1)
}
const log = path.join(env.NODESET_DATA, 'migrations.log')
appendFileSync(log, `${new Date().toISOString()} ${env.NODESET_RELEASE} ${env.NODESET_NODE}\n`)
console.log(`migrated ${env.CONFIG_MYSQL_DBNAME ?? 'no database'} for ${env.NODESET_RELEASE} on ${env.NODESET_NODE}`)
