// The esbuild options of every Lambda bundle, in one place: scripts/build.mjs builds the functions
// with them and bench/run.ts builds its baseline with them, so table c compares like with like.
// One bundle per entry point (as Powertools' CDK bundling does): ESM, minified, tree-shaken, with
// source maps, targeting the Lambda runtime (node22).

// ESM bundles still meet CommonJS dependencies that call require() for node built-ins.
const requireShim = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";

/**
 * Options for the bundle of `entry` into `outdir` (index.js there). Code splitting puts what is
 * loaded with `import()` (the KMS client, jose, the SDK's own credential providers) in chunks of
 * its own, so a cold start loads only what the warm path needs (BENCHMARKS.md, table c).
 */
export function functionBundleOptions(entry, outdir) {
  return {
    entryPoints: { index: entry },
    // index.js beside a {"type":"module"} package.json rather than index.mjs: Lambda loads both,
    // but `osls invoke local` only finds .js and .cjs handlers.
    outdir,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    minify: true,
    treeShaking: true,
    // Error classes name themselves from their constructor (`this.name = new.target.name`): keep
    // the names readable in logs despite minification.
    keepNames: true,
    sourcemap: true,
    // File and line are what --enable-source-maps needs; the embedded sources would triple the zip.
    sourcesContent: false,
    legalComments: 'none',
    mainFields: ['module', 'main'],
    banner: { js: requireShim },
    logLevel: 'warning',
  };
}
