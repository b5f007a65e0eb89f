/**
 * Quiet, tidy runs: `npm test` shows the report only and leaves nothing behind; the scan still
 * sees every line any code printed; the tests and their child processes clean up their temp
 * directories (`npm run size`, which rebuilds dist/, is checked in test/deploy/serverless.test.ts,
 * beside the other runs that rebuild it: one file runs its tests one after the other). Each run here is a child process with a temp directory of its own
 * (TMPDIR), whose entries are counted afterwards.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A temp directory for one child run: its TMPDIR. */
function privateTmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidy-'));
  scratch.push(dir);
  return dir;
}

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

// `npm test`'s own environment reaches its children; these runs must not record into it.
const outside = { TOKEN_VENDOR_SENSITIVE_RECORD: '', TOKEN_VENDOR_REPORT_FD: '' };

describe('npm test (scripts/test.mjs)', () => {
  it('shows the report only, and removes its log, records and temp files when the run passes', async () => {
    const tmp = privateTmp();
    const result = await run(process.execPath, ['scripts/test.mjs', 'test/unit/logScan.test.ts', 'test/integration/opsCli.test.ts'], { ...outside, TMPDIR: tmp });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ ✓ test\/unit\/logScan\.test\.ts \(2 tests\) \d+ms$/m);
    expect(result.stdout).toMatch(/^ ✓ test\/integration\/opsCli\.test\.ts \(\d+ tests\) \d+ms$/m);
    expect(result.stdout).toMatch(/^ Test Files {2}2 passed \(2\)$/m);
    expect(result.stdout).toMatch(/^log scan: \d+ lines clean of /m);
    // Every line on the terminal is the report's: the banner, a file, the totals, the scan.
    const report = /^( RUN {2}vitest | ✓ test\/| +(Test Files|Tests|Duration) {2}|log scan: )/;
    expect(result.stdout.split('\n').filter((l) => l.trim() !== '' && !report.test(l))).toEqual([]);
    expect(result.stderr).toBe('');
    expect(readdirSync(tmp)).toEqual([]);
  }, 120_000);

  it('keeps every channel out of the terminal and in the log, where the scan finds a recorded secret on each', async () => {
    const tmp = privateTmp();
    const result = await run(process.execPath, ['scripts/test.mjs', '--config', 'test/fixtures/tidy/vitest.config.ts'], { ...outside, TMPDIR: tmp });
    // the fixture passes; the scan fails the run
    expect(result.stdout).toMatch(/^ ✓ noisy\.fixture\.ts \(1 test\) /m);
    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain('channel ');
    expect(result.stdout).not.toContain('"level"');
    const channels = ['console.log', 'worker-stdout', 'worker-stderr', 'child-stdout', 'child-stderr'];
    for (const channel of channels) expect(result.stderr).toMatch(new RegExp(`^LEAK client_secret at .*output\\.log:\\d+: .*channel ${channel.replace('.', '\\.')} <client_secret>$`, 'm'));
    expect(result.stderr).toMatch(/^log scan: 5 leak\(s\)$/m);
    // kept, and named, because the scan failed; inside the temp directory, not the checkout
    const kept = /kept in (\S+) /.exec(result.stderr)?.[1];
    expect(kept?.startsWith(join(tmp, 'token-vendor-test-'))).toBe(true);
    expect(readdirSync(tmp)).toEqual([kept!.slice(tmp.length + 1)]);
    const [record] = readFileSync(join(kept!, 'sensitive.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { value: string });
    expect(result.stdout.includes(record!.value) || result.stderr.includes(record!.value)).toBe(false);
    const log = readFileSync(join(kept!, 'output.log'), 'utf8');
    for (const channel of channels) expect(log).toContain(`channel ${channel} ${record!.value}`);
  }, 120_000);
});

describe('nothing is left in the temp directory', () => {
  it('by test files run with vitest directly, their child processes included', async () => {
    const tmp = privateTmp();
    // tsx's transform cache (TMPDIR/tsx-<uid>) is tsx's own, kept across runs by design: off here,
    // so that any entry left is a leak of the tests.
    const files = ['test/integration/ops.test.ts', 'test/integration/opsCli.test.ts', 'test/unit/opsArgs.test.ts', 'test/local/moto.test.ts'];
    const result = await run(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...files], { ...outside, TMPDIR: tmp, TSX_DISABLE_CACHE: '1', POWERTOOLS_LOG_LEVEL: 'SILENT', FORCE_COLOR: '0' });
    // Passed or not (a failing test must clean up too), each file ran its tests.
    // eslint-disable-next-line no-control-regex -- vitest colours its report even with FORCE_COLOR=0
    const report = result.stdout.replace(/\x1b\[[0-9;]*m/g, '');
    for (const file of files) expect(report, report.slice(-2000)).toMatch(new RegExp(`^ [✓❯×] ${file.replace(/[.]/g, '\\.')} \\([1-9]\\d* tests?`, 'm'));
    expect(readdirSync(tmp)).toEqual([]);
  }, 180_000);
});
