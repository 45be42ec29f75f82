/** Thrown for a failure the user should read as one clear message, with an exit code. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message)
  }
}
