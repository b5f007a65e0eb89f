/**
 * `npm start` (built to dist/local/stack.mjs by scripts/build.mjs): the local stack, serving the
 * grants file (`-- --grants FILE`, default grants.json). What it runs and why: local/localStack.ts.
 * Ctrl-C stops everything it started.
 */
import { runLocalStack } from './localStack.js';

await runLocalStack({ argv: process.argv.slice(2), env: process.env });
