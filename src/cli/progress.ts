/**
 * Live progress for long work over many items (nodes, node × step): listr2 in a terminal, plain
 * timestamped lines otherwise, NDJSON events with --json. Commands report; the view decides how.
 */
import {createInterface} from 'node:readline/promises'
import {Writable} from 'node:stream'
import type {ListrTaskWrapper} from 'listr2'
import {redact} from '../core/redact.js'
import type {OperationUi, ProgressSink} from '../operations/ui.js'

type Progress = ProgressSink

export function progressView(items: string[], opts: {json: boolean; secrets: string[]}): Progress {
  if (opts.json) return new JsonProgress(opts.secrets)
  if (process.stdout.isTTY && items.length > 0) return new ListrProgress(items, opts.secrets)
  return new LineProgress(opts.secrets)
}

class JsonProgress implements Progress {
  constructor(private readonly secrets: string[]) {}
  private write(event: Record<string, unknown>): void {
    process.stdout.write(redact(JSON.stringify({time: new Date().toISOString(), ...event}), this.secrets) + '\n')
  }
  update(item: string, text: string): void {
    this.write({type: 'progress', item, text})
  }
  done(item: string, ok: boolean, text: string): void {
    this.write({type: ok ? 'done' : 'failed', item, text})
  }
  event(event: Record<string, unknown>): void {
    this.write(event)
  }
  async finish(): Promise<void> {}
}

class LineProgress implements Progress {
  private readonly last = new Map<string, string>()
  constructor(private readonly secrets: string[]) {}
  private line(item: string, text: string): void {
    if (this.last.get(item) === text) return
    this.last.set(item, text)
    process.stdout.write(redact(`${new Date().toISOString().slice(11, 19)} ${item}: ${text}`, this.secrets) + '\n')
  }
  update(item: string, text: string): void {
    this.line(item, text)
  }
  done(item: string, ok: boolean, text: string): void {
    this.line(item, `${ok ? 'ok' : 'FAILED'}: ${text}`)
  }
  event(): void {}
  async finish(): Promise<void> {}
}

interface Handle {
  task?: ListrTaskWrapper<unknown, never, never>
  title?: string
  finish?: (error?: Error) => void
  outcome?: {ok: boolean; text: string}
}

class ListrProgress implements Progress {
  private readonly handles = new Map<string, Handle>()
  private readonly running: Promise<unknown>

  constructor(
    items: string[],
    private readonly secrets: string[],
  ) {
    for (const item of items) this.handles.set(item, {})
    // listr2 is loaded when a terminal shows progress, not at every start-up; until then, titles and
    // outcomes wait in the handles (each task takes them when it starts).
    this.running = import('listr2').then(({Listr}) => this.list(Listr, items).run()).catch(() => undefined)
  }

  private list(Listr: typeof import('listr2').Listr, items: string[]) {
    return new Listr(
      items.map((item) => ({
        title: item,
        task: (_ctx: unknown, task: ListrTaskWrapper<unknown, never, never>) =>
          new Promise<void>((resolve, reject) => {
            const handle = this.handles.get(item)!
            handle.task = task
            handle.finish = (error) => (error ? reject(error) : resolve())
            if (handle.title) task.title = handle.title
            if (handle.outcome) this.settle(item, handle)
          }),
      })),
      {concurrent: true, exitOnError: false},
    )
  }

  private settle(item: string, handle: Handle): void {
    const {ok, text} = handle.outcome!
    if (handle.task) handle.task.title = redact(`${item}: ${text}`, this.secrets)
    handle.finish?.(ok ? undefined : new Error(redact(`${item}: ${text}`, this.secrets)))
  }

  update(item: string, text: string): void {
    const handle = this.handles.get(item)
    if (!handle) return
    handle.title = redact(`${item}: ${text}`, this.secrets)
    if (handle.task) handle.task.title = handle.title
  }

  done(item: string, ok: boolean, text: string): void {
    const handle = this.handles.get(item)
    if (!handle || handle.outcome) return
    handle.outcome = {ok, text}
    this.settle(item, handle)
  }

  event(): void {}

  async finish(): Promise<void> {
    for (const [item, handle] of this.handles)
      if (!handle.outcome) this.done(item, true, handle.title?.replace(`${item}: `, '') ?? 'done')
    await this.running
  }
}

/** The CLI's side of an operation: progress views, headings and notes, and questions on a terminal. */
export function cliUi(opts: {json: boolean; secrets: string[]}): OperationUi {
  return {
    progress: (items) => progressView(items, opts),
    heading: (text) => {
      if (!opts.json) process.stdout.write(redact(text, opts.secrets) + '\n')
    },
    note: (text) => process.stderr.write(redact(text, opts.secrets) + '\n'),
    ask: async (question, {secret}) => {
      if (!process.stdin.isTTY) return undefined
      // A secret is not echoed: once the question is shown, what the user types is not written back.
      let muted = false
      const output = new Writable({
        write(chunk, _encoding, done) {
          if (!muted) process.stderr.write(chunk)
          done()
        },
      })
      const rl = createInterface({input: process.stdin, output, terminal: true})
      try {
        const answer = rl.question(`${question}: `)
        muted = secret
        const text = await answer
        if (secret) process.stderr.write('\n')
        return text.trim() || undefined
      } finally {
        rl.close()
      }
    },
    confirm: async (question) => {
      if (!process.stdin.isTTY) return undefined
      const rl = createInterface({input: process.stdin, output: process.stderr})
      try {
        return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim())
      } finally {
        rl.close()
      }
    },
  }
}
