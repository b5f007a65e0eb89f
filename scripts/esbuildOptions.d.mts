import type { BuildOptions } from 'esbuild';

/** The esbuild options of every Lambda bundle (scripts/esbuildOptions.mjs). */
export function functionBundleOptions(entry: string, outdir: string): BuildOptions & { outdir: string };
