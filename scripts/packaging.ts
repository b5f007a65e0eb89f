/**
 * Packaging the service as CI and a deploy would (`osls package`), with no AWS credentials in the
 * environment, and reading what it produced.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: unknown;
  DeletionPolicy?: string;
}
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Outputs?: Record<string, unknown>;
}

export interface Packaged {
  readonly dir: string;
  readonly template: CfnTemplate;
  readonly templatePath: string;
}

export interface PackageResult {
  readonly status: number;
  readonly output: string;
}

/** Run `osls package`; returns its exit status and combined output. */
export function runPackage(stage: string, dir: string, params: Record<string, string> = {}): PackageResult {
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  // Prove packaging needs no AWS account.
  for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_ENDPOINT_URL']) delete env[key];
  const args = ['node_modules/osls/bin/serverless.js', 'package', '--stage', stage, '--package', dir];
  for (const [key, value] of Object.entries(params)) args.push('--param', `${key}=${value}`);
  const result = spawnSync(process.execPath, args, { env, encoding: 'utf8', timeout: 180_000 });
  return { status: result.status ?? 1, output: `${result.stdout}\n${result.stderr}` };
}

export function packageService(stage: string, params: Record<string, string> = {}): Packaged {
  const dir = mkdtempSync(join(tmpdir(), `package-${stage}-`));
  const result = runPackage(stage, dir, params);
  if (result.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`osls package failed (${result.status}):\n${result.output}`);
  }
  const templatePath = join(dir, 'cloudformation-template-update-stack.json');
  return { dir, templatePath, template: JSON.parse(readFileSync(templatePath, 'utf8')) as CfnTemplate };
}

export interface ZipEntry {
  readonly name: string;
  readonly size: number;
  readonly compressedSize: number;
}

/** The entries of a zip, read with the machine's Python (Node's standard library has no zip reader). */
export function zipListing(zipPath: string): ZipEntry[] {
  const script = 'import sys, zipfile, json; print(json.dumps([[i.filename, i.file_size, i.compress_size] for i in zipfile.ZipFile(sys.argv[1]).infolist()]))';
  const rows = JSON.parse(execFileSync('python3', ['-c', script, zipPath], { encoding: 'utf8' })) as Array<[string, number, number]>;
  return rows.map(([name, size, compressedSize]) => ({ name, size, compressedSize }));
}

export function zipEntries(zipPath: string): string[] {
  return zipListing(zipPath).map((e) => e.name);
}

/** cfn-lint on a template; fails loudly when cfn-lint is missing. */
export function cfnLint(templatePath: string): { status: number; output: string } {
  const result = spawnSync('cfn-lint', ['--', templatePath], { encoding: 'utf8' });
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error("cfn-lint is required (1.51): pip install 'cfn-lint==1.51.0'");
  }
  return { status: result.status ?? 1, output: `${result.stdout}${result.stderr}` };
}
