/**
 * The standard output of a step command (commands.ts), read as it arrives: what the node recorded
 * (with `readRecorded`), then either `unchanged` and the recorded outputs, or the script's own
 * output and, on success, its outputs. Only the script's own output is ever handed out for the log:
 * the recorded listing and the outputs (which may hold secrets not known yet) never are.
 */
import {markerLine, parseRecordedSteps, type RecordedStep} from './commands.js'

type Phase = 'recorded' | 'start' | 'running' | 'outputs' | 'unchanged'

/** Past this much of a line without its end, the script's output is handed out anyway. */
const MAX_PENDING = 65536

export class StepOutput {
  private phase: Phase
  private pending = ''
  private outputText = ''
  private readonly recordedEnd: string
  private readonly unchangedLine: string
  private readonly outputsLine: string
  /** What the node recorded, once its listing has arrived (readRecorded). */
  recorded?: Map<string, RecordedStep>

  constructor(
    marker: string,
    readRecorded: boolean,
    private readonly on: {
      /** The listing of recorded steps has arrived. */
      recorded?(recorded: Map<string, RecordedStep>): void
      /** The step is not unchanged: its script runs. */
      running?(): void
      /** Script output that may go to the log: whole lines, except at the end or past MAX_PENDING. */
      script?(text: string): void
    } = {},
  ) {
    this.phase = readRecorded ? 'recorded' : 'start'
    this.recordedEnd = markerLine(marker, 'recorded')
    this.unchangedLine = markerLine(marker, 'unchanged')
    this.outputsLine = markerLine(marker, 'outputs')
  }

  /** The node found the step unchanged. */
  get unchanged(): boolean {
    return this.phase === 'unchanged'
  }

  get running(): boolean {
    return this.phase === 'running' || this.phase === 'outputs'
  }

  /** The outputs the node printed: recorded ones when unchanged, fresh ones after a success. */
  get outputs(): string | undefined {
    return this.phase === 'unchanged' || this.phase === 'outputs' ? this.outputText : undefined
  }

  push(chunk: string): void {
    if (this.phase === 'unchanged' || this.phase === 'outputs') {
      this.outputText += chunk
      return
    }
    this.pending += chunk
    if (this.phase === 'recorded') {
      const end = this.pending.indexOf(this.recordedEnd)
      if (end < 0) return
      this.recorded = parseRecordedSteps(this.pending.slice(0, end))
      this.pending = this.pending.slice(end + this.recordedEnd.length)
      this.phase = 'start'
      this.on.recorded?.(this.recorded)
    }
    if (this.phase === 'start') {
      if (this.pending.startsWith(this.unchangedLine)) {
        this.phase = 'unchanged'
        this.outputText = this.pending.slice(this.unchangedLine.length)
        this.pending = ''
        return
      }
      // Still possibly the marker: wait for more.
      if (this.unchangedLine.startsWith(this.pending)) return
      this.startRunning()
    }
    this.scan(false)
  }

  /** The command ended: hand out what is left of the script's output. */
  end(): void {
    // A listing cut short is never logged (it holds recorded outputs): the step failed before its script.
    if (this.phase === 'recorded') {
      this.pending = ''
      return
    }
    if (this.phase === 'start') {
      if (!this.pending) return
      this.startRunning()
    }
    if (this.phase === 'running') this.scan(true)
  }

  private startRunning(): void {
    this.phase = 'running'
    this.on.running?.()
  }

  private scan(all: boolean): void {
    const at = this.pending.indexOf(this.outputsLine)
    if (at >= 0) {
      this.emit(this.pending.slice(0, at))
      this.outputText = this.pending.slice(at + this.outputsLine.length)
      this.pending = ''
      this.phase = 'outputs'
      return
    }
    // A line without its end may be where the outputs line starts: it waits, unless it grows too long.
    let cut = all ? this.pending.length : this.pending.lastIndexOf('\n') + 1
    if (!all && this.pending.length - cut > MAX_PENDING) cut = this.pending.length - this.outputsLine.length
    if (cut <= 0) return
    this.emit(this.pending.slice(0, cut))
    this.pending = this.pending.slice(cut)
  }

  private emit(text: string): void {
    if (text) this.on.script?.(text)
  }
}
