/** The config server's report as a table: a row per service, the node's columns on its first row. */
import type {DeploymentStatus} from '../configserver/protocol.js'
import {table} from '../plan/render.js'

export function statusText(status: DeploymentStatus): string {
  const rows = status.instances.flatMap((i) =>
    (i.services.length
      ? i.services
      : [
          {
            name: '-',
            status: '-' as string,
            waitingFor: undefined as string[] | undefined,
            exitCode: undefined as number | undefined,
          },
        ]
    ).map((s, k) => [
      k === 0 ? i.id : '',
      k === 0 ? (i.address ?? '-') : '',
      k === 0 ? (i.lastContact ?? 'never') : '',
      s.name,
      s.status + (s.exitCode !== undefined ? ` (exit ${s.exitCode})` : ''),
      s.waitingFor?.join('; ') ?? '',
    ]),
  )
  return [
    `deployment ${status.deployment}: ${status.state}${status.reason ? ` — ${status.reason}` : ''}`,
    '',
    table(['NODE', 'ADDRESS', 'LAST PHONE-HOME', 'SERVICE', 'STATE', 'WAITING FOR'], rows),
  ].join('\n')
}
