#!/usr/bin/env node
// Builds the client package: client/*.ts compiled one file each, with declarations, into
// client/dist (or `--out DIR`; the repository's `npm run build` uses dist/client). tsc and not a
// bundler: the output keeps the sources' module layout, `import` specifiers and doc comments, and
// the dependencies stay the package's own `dependencies`, resolved by the service's install.
//
// `npm pack` / `npm publish` run it as `prepack` and `node build.mjs --clean` as `postpack`
// (npm docs, "scripts": "prepack: Runs BEFORE a tarball is packed"; "postpack: Runs AFTER the
// tarball has been generated"), so client/dist exists only while a tarball is made and never
// goes stale in a checkout.
//
// The build runs in a checkout of the repository: TypeScript, @types/node and the dependencies'
// types come from the repository's node_modules (`npm ci` at its root), found by Node's usual
// lookup up the directory tree.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { out: { type: 'string' }, clean: { type: 'boolean' } } });
const out = resolve(values.out ?? join(here, 'dist'));

// Stale files from an earlier build (a source since deleted) must not reach a tarball.
rmSync(out, { recursive: true, force: true });
if (values.clean === true) process.exit(0);

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.error('client/build.mjs: TypeScript not found: run `npm ci` at the repository root first (the client is built from a checkout).');
  process.exit(1);
}
try {
  execFileSync(process.execPath, [tsc, '-p', join(here, 'tsconfig.build.json'), '--outDir', out], { stdio: 'inherit', cwd: here });
} catch {
  // tsc emits even when it reports errors; npm skips `postpack` after a failed `prepack`, so
  // nothing else would remove a half-checked build from the checkout.
  rmSync(out, { recursive: true, force: true });
  process.exit(1);
}
