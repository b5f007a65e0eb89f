#!/usr/bin/env node
// `npm test`: the whole test run, then the log scan over everything it printed.
//
// The terminal shows the test report only (scripts/quietReporter.ts, on a pipe of its own: fd 3).
// Everything else the run prints — vitest's default report, the tests' console output, the
// functions' JSON logs, whatever any child process writes — goes to output.log in a directory of
// the system's temp directory, never the checkout; so does the record of every secret and token
// that existed during the run (sensitive.jsonl: TOKEN_VENDOR_SENSITIVE_RECORD, written by the
// local Auth0 tenant and the test harness). The scan then reads both: no line may contain any
// recorded value. The directory is also the run's TMPDIR, so whatever a test or a child process
// leaves in the temp directory goes with it. It is removed afterwards, unless the run or the scan
// failed: then its path is printed, to read the whole log.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const runDir = mkdtempSync(join(tmpdir(), 'token-vendor-test-'));
const logPath = join(runDir, 'output.log');
const recordsPath = join(runDir, 'sensitive.jsonl');
const runTmp = join(runDir, 'tmp');
mkdirSync(runTmp);
const log = createWriteStream(logPath);

const env = {
  ...process.env,
  TOKEN_VENDOR_SENSITIVE_RECORD: recordsPath,
  // scripts/quietReporter.ts writes the terminal's report here.
  TOKEN_VENDOR_REPORT_FD: '3',
  TMPDIR: runTmp,
  // Every log line the code can write, so the scan sees all of them.
  POWERTOOLS_LOG_LEVEL: 'DEBUG',
  FORCE_COLOR: '0',
  // Node 20 machines run the tests; the warning that SDK releases after January 2027 need Node 22 is noise here.
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};
const args = process.argv.slice(2);
// By path: a run with another --config (and so another root) still reports through it.
const reporter = fileURLToPath(new URL('quietReporter.ts', import.meta.url));

// Ctrl-C reaches vitest too (same process group): wait for it to stop, then tidy up as below.
process.on('SIGINT', () => {});

const child = spawn(
  process.execPath,
  ['node_modules/vitest/vitest.mjs', 'run', '--reporter=default', `--reporter=${reporter}`, ...args],
  { env, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
);
let report = '';
child.stdout.on('data', (d) => log.write(d));
child.stderr.on('data', (d) => log.write(d));
child.stdio[3].on('data', (d) => {
  report += d;
  process.stdout.write(d);
  log.write(d);
});
const testCode = await new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
await new Promise((resolve) => log.end(resolve));

if (testCode !== 0 && !report.includes('Test Files')) {
  // vitest stopped before it could report (a config or startup error): its own words are in the log.
  const lines = readFileSync(logPath, 'utf8').trimEnd().split('\n');
  console.error(`vitest exited with ${testCode} before reporting; the last lines of its output:\n${lines.slice(-30).join('\n')}`);
}

// A filtered run (`npm test -- <filter>`) may run no integration test and so record nothing: its
// scan checks what there is. The whole run must have recorded tokens and secrets.
const scanArgs = ['--import', 'tsx', 'scripts/scan-logs.ts', recordsPath, logPath, ...(args.length > 0 ? ['--allow-empty'] : [])];
const scan = spawn(process.execPath, scanArgs, { env: { ...process.env, TMPDIR: runTmp }, stdio: 'inherit' });
const scanCode = await new Promise((resolve) => scan.on('close', (code) => resolve(code ?? 1)));

if (testCode === 0 && scanCode === 0) {
  rmSync(runDir, { recursive: true, force: true });
} else {
  console.error(`the run's output and records are kept in ${runDir} (output.log: everything the run printed)`);
}
process.exit(testCode !== 0 ? testCode : scanCode);
