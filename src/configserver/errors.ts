/** Errors the config server answers with: a status, a message that says what to do, and extra fields. */
import type {z} from 'zod'

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

/** Zod issues as `{path, message}`: the field and what is wrong with it, never the value sent. */
export function zodIssues(error: z.ZodError): Array<{path: string; message: string}> {
  return error.issues.map((issue) => ({path: issue.path.map(String).join('.') || '(body)', message: issue.message}))
}

/** The store failing underneath (disk full, I/O error, damage, the database unreachable): the server's trouble, said as 503. */
const STATE_UNAVAILABLE =
  /^(SQLITE_(FULL|IOERR|CORRUPT|NOTADB|BUSY|LOCKED|READONLY|CANTOPEN|PROTOCOL)|POSTGRES_UNAVAILABLE)/

/** What an error is answered with: its status, headers and `{error}` body, and what goes to the log (server faults only). */
export function errorAnswer(error: Error & {statusCode?: number; code?: string}): {
  statusCode: number
  headers: Record<string, string>
  body: Record<string, unknown>
  logged?: string
} {
  if (error instanceof HttpError)
    return {statusCode: error.statusCode, headers: error.headers, body: {error: error.message, ...error.extra}}
  if (typeof error.code === 'string' && STATE_UNAVAILABLE.test(error.code))
    return {
      statusCode: 503,
      headers: {},
      body: {error: `the config server cannot use its state (${error.code}); see its log`},
      logged: `the state cannot be used (${error.code})`,
    }
  const status =
    typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500
  if (status === 500)
    return {
      statusCode: 500,
      headers: {},
      body: {error: 'internal error; see the config server log'},
      logged: 'internal error',
    }
  return {statusCode: status, headers: {}, body: {error: error.message}}
}
