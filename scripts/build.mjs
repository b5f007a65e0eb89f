#!/usr/bin/env node
// Builds one esbuild bundle per entry point (options in scripts/esbuildOptions.mjs). The grants
// file is validated here, so a bad
// grants file fails the build with a message naming the field, and is copied beside the bundle.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { functionBundleOptions } from './esbuildOptions.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist');
// `--grants <file>` packages another grants file (a stage's own); grants.json by default.
const grantsArg = process.argv.indexOf('--grants');
const grantsFile = grantsArg > 0 && process.argv[grantsArg + 1] ? process.argv[grantsArg + 1] : join(root, 'grants.json');

// Validate first: a broken grants file must not produce an artifact.
try {
  execFileSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/validate-grants.ts'), grantsFile], { stdio: 'inherit', cwd: root });
} catch {
  // validate-grants has printed the one line that names the field: no stack trace on top of it.
  process.exit(2);
}

rmSync(out, { recursive: true, force: true });

/** Lambda functions: everything bundled (the SDK version is pinned by us, not the runtime). */
const functions = { vend: 'functions/vend.ts', refresh: 'functions/refresh.ts', rotate: 'functions/rotate.ts' };
for (const [name, entry] of Object.entries(functions)) {
  await build(functionBundleOptions(join(root, entry), join(out, name)));
  writeFileSync(join(out, name, 'package.json'), '{ "type": "module" }\n');
  copyFileSync(grantsFile, join(out, name, 'grants.json'));
}

/**
 * The local stack. Dependencies stay external. The caller client is not built here: it is its own
 * package (client/package.json), built into client/dist when packed (`npm pack ./client`).
 */
for (const [entry, outfile] of [['local/stack.ts', 'local/stack.mjs']]) {
  mkdirSync(dirname(join(out, outfile)), { recursive: true });
  await build({
    entryPoints: [join(root, entry)],
    outfile: join(out, outfile),
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    logLevel: 'warning',
  });
}

console.log(`built ${Object.keys(functions).length} function bundle(s) and the local stack into dist/`);
