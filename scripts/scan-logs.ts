/**
 * `tsx scripts/scan-logs.ts <records.jsonl> <output.log> [--allow-empty]`: fails (exit 1) if any
 * recorded client secret or access token appears in the output, or if nothing was recorded (a
 * scan that checked nothing would pass vacuously). `--allow-empty` (a filtered run, which may run
 * no integration test) accepts an empty or missing record and scans for what there is.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseRecords, scanForLeaks } from './logScan.js';

const args = process.argv.slice(2);
const allowEmpty = args.includes('--allow-empty');
const [recordsFile, logFile, ...rest] = args.filter((a) => a !== '--allow-empty');
if (recordsFile === undefined || logFile === undefined || rest.length > 0) {
  console.error('usage: scan-logs <records.jsonl> <output.log> [--allow-empty]');
  process.exit(2);
}
const records = existsSync(recordsFile) || !allowEmpty ? parseRecords(readFileSync(recordsFile, 'utf8')) : [];
const tokens = records.filter((r) => r.kind === 'access_token').length;
const secrets = records.filter((r) => r.kind === 'client_secret').length;
if (!allowEmpty && (tokens === 0 || secrets === 0)) {
  console.error(`log scan: nothing to look for (${tokens} tokens, ${secrets} secrets recorded): the integration tests did not run`);
  process.exit(1);
}
const log = readFileSync(logFile, 'utf8');
const leaks = scanForLeaks(log, records);
if (leaks.length > 0) {
  for (const leak of leaks.slice(0, 20)) console.error(`LEAK ${leak.kind} at ${logFile}:${leak.line}: ${leak.excerpt}`);
  console.error(`log scan: ${leaks.length} leak(s)`);
  process.exit(1);
}
const keys = records.filter((r) => r.kind === 'private_key').length;
console.log(`log scan: ${log.split('\n').length} lines clean of ${tokens} access tokens, ${secrets} client secrets and ${keys} private keys`);
