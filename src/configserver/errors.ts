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
