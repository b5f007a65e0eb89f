/**
 * The report `npm test` shows on the terminal: one line per test file as it finishes, each failure
 * with its error, and the totals. scripts/test.mjs runs vitest with this reporter and the default
 * one: the default reporter, the tests' console output and everything any child process printed go
 * to the run's log (which the log scan reads); this one writes to the file descriptor named by
 * TOKEN_VENDOR_REPORT_FD, which test.mjs shows on the terminal (and adds to the log, so the scan
 * covers it too).
 *
 * Built on vitest's public reporter API only (https://vitest.dev/api/advanced/reporters: TestModule,
 * TestCase, onTestRunEnd), not on the default reporter's internals: its output goes through the
 * same logger as the workers' piped stdout, so it cannot be separated from them.
 */
import { Socket } from 'node:net';
import { relative } from 'node:path';
import type { Reporter, SerializedError, TestCase, TestModule, TestRunEndReason, Vitest } from 'vitest/node';

/** Lines of one error shown on the terminal; the whole error is in the log. */
const MAX_ERROR_LINES = 40;

export default class QuietReporter implements Reporter {
  private readonly out: Socket | undefined;
  private root = process.cwd();
  private started = Date.now();
  private readonly written: Promise<void>[] = [];

  constructor() {
    const fd = Number(process.env.TOKEN_VENDOR_REPORT_FD);
    // A pipe test.mjs opened for this child: a net.Socket writes to it as process.stdout writes to
    // a pipe (asynchronously, never failing with EAGAIN the way fs.writeSync on a full pipe can).
    this.out = Number.isInteger(fd) && fd > 2 ? new Socket({ fd, readable: false, writable: true }) : undefined;
  }

  onInit(vitest: Vitest): void {
    this.root = vitest.config.root;
    this.started = Date.now();
    this.write(`\n RUN  vitest ${vitest.version} ${this.root}\n\n`);
  }

  onTestModuleEnd(module: TestModule): void {
    const tests = [...module.children.allTests()];
    const failed = tests.filter((t) => t.result().state === 'failed');
    const skipped = tests.filter((t) => t.result().state === 'skipped').length;
    const moduleErrors = [...module.errors(), ...[...module.children.allSuites()].flatMap((s) => s.errors())];
    const ok = failed.length === 0 && moduleErrors.length === 0 && module.state() !== 'failed';
    const counts = [`${tests.length} test${tests.length === 1 ? '' : 's'}`, failed.length > 0 ? `${failed.length} failed` : '', skipped > 0 ? `${skipped} skipped` : ''].filter(Boolean).join(' | ');
    this.write(` ${ok ? '✓' : '✗'} ${module.relativeModuleId} (${counts}) ${Math.round(module.diagnostic().duration)}ms\n`);
    for (const error of moduleErrors) this.write(this.formatError(error, '   '));
    for (const test of failed) {
      this.write(`   × ${test.fullName}\n`);
      for (const error of failedErrors(test)) this.write(this.formatError(error, '     '));
    }
  }

  async onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>, reason: TestRunEndReason): Promise<void> {
    for (const error of unhandledErrors) this.write(`\n Unhandled error\n${this.formatError(error, '   ')}`);
    const tests = modules.flatMap((m) => [...m.children.allTests()]);
    const count = (state: string) => tests.filter((t) => t.result().state === state).length;
    const failedFiles = modules.filter((m) => m.state() === 'failed').length;
    const line = (label: string, parts: Array<[number, string]>, total: number) =>
      `${label.padStart(11)}  ${parts.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`).join(' | ') || '0'} (${total})\n`;
    this.write('\n');
    this.write(line('Test Files', [[failedFiles, 'failed'], [modules.length - failedFiles, 'passed']], modules.length));
    this.write(line('Tests', [[count('failed'), 'failed'], [count('passed'), 'passed'], [count('skipped'), 'skipped']], tests.length));
    if (unhandledErrors.length > 0) this.write(`${'Errors'.padStart(11)}  ${unhandledErrors.length} unhandled\n`);
    this.write(`${'Duration'.padStart(11)}  ${((Date.now() - this.started) / 1000).toFixed(1)} s${reason === 'interrupted' ? ' (interrupted)' : ''}\n\n`);
    await Promise.all(this.written);
  }

  private write(text: string): void {
    if (this.out === undefined) {
      process.stdout.write(text);
      return;
    }
    this.written.push(new Promise((done) => this.out!.write(text, () => done())));
  }

  /** The error's name and message, its diff, and the stack frames in this repository (not node_modules). */
  private formatError(error: SerializedError & { diff?: string }, indent: string): string {
    const lines = [`${error.name ?? 'Error'}: ${error.message}`];
    if (error.diff) lines.push('', ...error.diff.split('\n'));
    const frames = (error.stacks ?? []).filter((f) => f.file.startsWith(this.root) && !f.file.includes('/node_modules/'));
    for (const frame of frames.slice(0, 5)) lines.push(`  at ${relative(this.root, frame.file)}:${frame.line}:${frame.column}${frame.method ? ` (${frame.method})` : ''}`);
    const shown = lines.flatMap((l) => l.split('\n'));
    const cut = shown.length > MAX_ERROR_LINES ? [...shown.slice(0, MAX_ERROR_LINES), `… ${shown.length - MAX_ERROR_LINES} more lines in the run's log`] : shown;
    return `${cut.map((l) => `${indent}${l}`.trimEnd()).join('\n')}\n`;
  }
}

function failedErrors(test: TestCase): ReadonlyArray<SerializedError> {
  const result = test.result();
  return result.state === 'failed' ? result.errors : [];
}
