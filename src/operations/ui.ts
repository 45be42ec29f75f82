/**
 * What an operation tells the person (or script) running it, without knowing how it is shown: live
 * progress over many items (nodes, node × step, an app's phases), structured events for --json, and
 * notes. The CLI implements it (src/cli/progress.ts); tests pass `silentUi` or a recorder.
 */
export interface ProgressSink {
  update(item: string, text: string): void
  done(item: string, ok: boolean, text: string): void
  /** A structured event (shown only as JSON). */
  event(event: Record<string, unknown>): void
  finish(): Promise<void>
}

export interface OperationUi {
  /** Progress over these items, until finish(). */
  progress(items: string[]): ProgressSink
  /** A heading between phases of a long command (not shown with --json). */
  heading(text: string): void
  /** One line for the person running the command (stderr). */
  note(text: string): void
  /** Ask a yes/no question; undefined when nobody can answer (no terminal). */
  confirm(question: string): Promise<boolean | undefined>
  /**
   * Ask for a value (a param given at launch); with `secret`, what is typed is not echoed. Undefined
   * when nobody can answer (no terminal).
   */
  ask?(question: string, opts: {secret: boolean}): Promise<string | undefined>
}

const quietSink: ProgressSink = {update() {}, done() {}, event() {}, finish: async () => undefined}

/** Shows nothing and answers no question: for tests and for work nobody watches. */
export const silentUi: OperationUi = {
  progress: () => quietSink,
  heading() {},
  note() {},
  confirm: async () => undefined,
  ask: async () => undefined,
}
