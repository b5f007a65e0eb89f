/**
 * From parsed arguments to the vendor's configuration, before anything is built: read the
 * environment file (if any), derive the table and key names from the stage, load and validate the
 * configuration and the grants, and check the client is in them. Reads files, never calls AWS.
 * Every failure is one line naming the problem: the CLI prints it with the usage and exits 2.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig, type VendorConfig } from '../functions/config.js';
import { shown, type OpsRun } from './args.js';

export type ResolvedTarget =
  | { readonly kind: 'error'; readonly message: string }
  | {
      readonly kind: 'ok';
      readonly config: VendorConfig;
      /** the environment file's variables: the SDK reads AWS_ENDPOINT_URL, AWS_REGION and credentials from them */
      readonly fileEnv: Readonly<Record<string, string>>;
    };

type Env = Readonly<Record<string, string | undefined>>;

export function resolveTarget(run: OpsRun, env: Env = process.env, cwd: string = process.cwd()): ResolvedTarget {
  const { target } = run;
  let fileEnv: Record<string, string> = {};
  if (target.kind === 'env-file') {
    const read = readEnvFile(resolve(cwd, target.path));
    if (typeof read === 'string') {
      const hint = target.local && read.includes('ENOENT') ? ': is the local stack running (npm start)?' : '';
      return { kind: 'error', message: `${target.local ? '--local' : '--env-file'}: ${target.path} ${read}${hint}` };
    }
    fileEnv = read;
  }
  const stage = target.kind === 'stage' ? target.stage : 'local';
  const grantsFile = resolve(cwd, run.grants ?? fileEnv.GRANTS_FILE ?? 'grants.json');
  let config: VendorConfig;
  try {
    config = loadConfig(
      {
        ...env,
        ...fileEnv,
        TOKEN_TABLE_NAME: fileEnv.TOKEN_TABLE_NAME ?? `token-vendor-${stage}`,
        TOKEN_SEAL_KEY_ID: fileEnv.TOKEN_SEAL_KEY_ID ?? `alias/token-vendor-${stage}`,
        GRANTS_FILE: grantsFile,
      },
      cwd,
    );
  } catch (error) {
    // loadConfig only parses the environment and the grants file: whatever it throws is a bad
    // configuration (a ConfigError naming the variable, or the grants file and its field).
    return { kind: 'error', message: `bad configuration: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (run.client !== undefined && !config.grants.clients.has(run.client)) {
    return { kind: 'error', message: `no client ${JSON.stringify(run.client)} in ${grantsFile}; known: ${[...config.grants.clients.keys()].join(', ')}` };
  }
  return { kind: 'ok', config, fileEnv };
}

/** The variables in an environment file, or why they cannot be had. */
function readEnvFile(path: string): Record<string, string> | string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).name})`;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return `is not JSON: ${(error as Error).message}`;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'must be a JSON object of variable names to strings';
  for (const [name, value] of Object.entries(doc)) {
    if (typeof value !== 'string') return `must be a JSON object of variable names to strings; ${shown(name)} is not a string`;
  }
  return doc as Record<string, string>;
}
