#!/usr/bin/env node
// `npm test`: the whole test run, then the log scan over everything it printed.
// Tests start their own moto_server and oidc-provider on free loopback ports; the local Auth0
// tenant records every secret and token it knows into .test-artifacts/sensitive.jsonl, and no
// line of the run's output may contain any of them.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const artifacts = join(process.cwd(), '.test-artifacts');
rmSync(artifacts, { recursive: true, force: true });
mkdirSync(artifacts, { recursive: true });
const logPath = join(artifacts, 'test-output.log');
const recordsPath = join(artifacts, 'sensitive.jsonl');
const log = createWriteStream(logPath);

const env = {
  ...process.env,
  TOKEN_VENDOR_SENSITIVE_RECORD: recordsPath,
  // Every log line the code can write, so the scan sees all of them.
  POWERTOOLS_LOG_LEVEL: 'DEBUG',
  FORCE_COLOR: '0',
  // Node 20 machines run the tests; the warning that SDK releases after January 2027 need Node 22 is noise here.
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};
const args = process.argv.slice(2);
const child = spawn(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
child.stdout.on('data', (d) => { process.stdout.write(d); log.write(d); });
child.stderr.on('data', (d) => { process.stderr.write(d); log.write(d); });
const code = await new Promise((resolve) => child.on('close', resolve));
await new Promise((resolve) => log.end(resolve));
if (code !== 0) process.exit(code ?? 1);
if (args.length > 0) {
  console.log('(a filtered run: log scan skipped)');
  process.exit(0);
}
const scan = spawn(process.execPath, ['--import', 'tsx', 'scripts/scan-logs.ts', recordsPath, logPath], { stdio: 'inherit' });
process.exit(await new Promise((resolve) => scan.on('close', resolve)));
