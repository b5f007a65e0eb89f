#!/usr/bin/env node
// `npm start [-- --grants FILE]`: build the bundles with the grants file the local stack will serve
// (validated first: one line naming the bad field, exit 2, nothing started), then run the local
// stack (local/stack.ts) with the same arguments. Ctrl-C reaches both processes (one process
// group); the stack stops what it started and this script exits with its status.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const at = args.indexOf('--grants');
const grants = at >= 0 ? args[at + 1] : undefined;
if (at >= 0 && (grants === undefined || grants.startsWith('--'))) {
  console.error('npm start: --grants needs a file: npm start -- --grants FILE');
  process.exit(2);
}
// A stack already running from the same state directory is found before anything is built: a
// rebuild would replace the bundles under the running stack's feet (invoke:local reads them).
const { checkRunningStack, localStateDir } = await tsImport('../local/stackState.ts', import.meta.url);
const stateDir = localStateDir(process.env, root, process.cwd());
const running = await checkRunningStack(stateDir);
if (running.kind === 'running') {
  const { pid, gatewayUrl, port } = running.state;
  console.error(`npm start: a local stack is already running from ${stateDir}: pid ${pid}, ${gatewayUrl} (PORT=${port}).`);
  console.error(`  Use it (npm run -s token -- --local ...), or stop it first (Ctrl-C where it runs, or kill ${pid}).`);
  console.error(`  To run another beside it: PORT=${port + 1} TOKEN_VENDOR_LOCAL_DIR=${stateDir}-${port + 1} npm start`);
  process.exit(1);
}
const build = spawnSync(process.execPath, [join(root, 'scripts/build.mjs'), ...(grants === undefined ? [] : ['--grants', grants])], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const stack = spawnSync(process.execPath, [join(root, 'dist/local/stack.mjs'), ...args], { stdio: 'inherit' });
process.exit(stack.status ?? 1);
