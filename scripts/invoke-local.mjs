#!/usr/bin/env node
// `npm run invoke:local -- events/<file>.json [function]`: `osls invoke local -f <function, default vend> --stage local` with the
// environment that points the function at the running local stack (`npm start` writes it).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const event = process.argv[2];
const fn = process.argv[3] ?? 'vend';
if (!event) {
  console.error('usage: npm run invoke:local -- events/<file>.json [vend|refresh]');
  process.exit(2);
}
const envFile = '.local/invoke-local.env.json';
if (!existsSync(envFile)) {
  console.error(`${envFile} is missing: start the local stack first (npm start, in another terminal)`);
  process.exit(2);
}
const env = JSON.parse(readFileSync(envFile, 'utf8'));
const args = ['osls', 'invoke', 'local', '-f', fn, '--stage', 'local', '-p', event];
for (const [key, value] of Object.entries(env)) args.push('-e', `${key}=${value}`);
const result = spawnSync('npx', args, {
  stdio: 'inherit',
  env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
});
process.exit(result.status ?? 1);
