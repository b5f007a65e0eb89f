/**
 * `npm run ops -- …` as a user first runs it: a separate process, with no AWS credentials, no
 * AWS endpoint and no local stack. Help and bad usage must answer from the command line alone;
 * the commands against a stack: test/integration/ops.test.ts.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ops-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The CLI in a bare environment: PATH only, and AWS configuration files that do not exist. */
function ops(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'ops/cli.ts', ...args],
      {
        cwd: root,
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH ?? '',
          HOME: dir,
          AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
          AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
          AWS_EC2_METADATA_DISABLED: 'true',
        },
      },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

const STACK_FRAME = /^\s+at /m;

/** Exit 2, nothing on stdout; stderr is one line naming the problem, a blank line, then the usage. */
function expectUsageError(result: Result, problem: string | RegExp, usageStart = 'usage: npm run ops -- <command>'): void {
  expect(result.code).toBe(2);
  expect(result.stdout).toBe('');
  expect(result.stderr).not.toMatch(STACK_FRAME);
  const [first, blank, usage] = result.stderr.split('\n');
  expect(first).toMatch(typeof problem === 'string' ? new RegExp(`^ops: ${problem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : problem);
  expect(blank).toBe('');
  expect(usage?.startsWith(usageStart)).toBe(true);
  expect(result.stderr).toContain('exit status: 0 done; 1 the command failed; 2 bad usage or configuration');
}

describe('npm run ops: help', () => {
  it.each([['--help'], ['-h'], ['help']])('%s prints the usage on stdout and exits 0', async (flag) => {
    const result = await ops(flag);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^usage: npm run ops -- <command> \[options\] \(--stage S \| --local \| --env-file F\)\n/);
    for (const word of ['status', 'flush', 'refresh', 'rotate', '--client', '--audience', '--stage', '--region', '--local', '--env-file', '--grants', '--json', '--verbose']) {
      expect(result.stdout).toContain(word);
    }
  });

  it('help flush and flush --help print flush’s usage with its options', async () => {
    for (const args of [['help', 'flush'], ['flush', '--help']]) {
      const result = await ops(...args);
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(/^usage: npm run ops -- flush --client C \[--audience A\] \[--organization O\] \(--stage S \| --local \| --env-file F\)/);
      expect(result.stdout).toContain('--client C ');
      expect(result.stdout).toContain('--audience A ');
      expect(result.stdout).toContain('MEMORY_REVALIDATE_SECONDS');
      expect(result.stdout).not.toContain('rotate');
    }
  });
});

describe('npm run ops: bad usage is one line and the usage on stderr, exit 2, never a stack trace', () => {
  it('an unknown command', async () => {
    expectUsageError(await ops('bogus'), 'unknown command "bogus"; commands: status, flush, refresh, rotate');
  });

  it('an unknown option', async () => {
    expectUsageError(await ops('--bogus'), 'unknown option --bogus');
    expectUsageError(await ops('status', '--local', '--bogus'), 'unknown option --bogus', 'usage: npm run ops -- status ');
  });

  it('an option without its value', async () => {
    expectUsageError(await ops('flush', '--stage', 'prod', '--client'), '--client needs a value', 'usage: npm run ops -- flush ');
  });

  it('flush without --client, or without saying where', async () => {
    expectUsageError(await ops('flush', '--stage', 'prod'), 'flush needs --client <name from the grants file>', 'usage: npm run ops -- flush ');
    expectUsageError(await ops('flush', '--client', 'orders-m2m'), 'say where: --stage <stage>, --local or --env-file <file>', 'usage: npm run ops -- flush ');
  });

  it('a client not in the grants file, before any AWS call', async () => {
    expectUsageError(await ops('flush', '--client', 'nope', '--stage', 'prod'), /^ops: no client "nope" in .*grants\.json; known: orders-m2m, auth0-rotator$/, 'usage: npm run ops -- flush ');
  });

  it('an environment file that cannot be read, is not JSON, or sets a bad variable', async () => {
    // Behind `--`: Node itself reads a script's `--env-file F` and exits 9 when F is missing
    // (nodejs/node#54232), before this program starts; since nodejs/node#54237 it stops at `--`.
    expectUsageError(await ops('--', 'status', '--env-file', join(dir, 'missing.json')), /^ops: --env-file: .*missing\.json cannot be read \(ENOENT\)$/, 'usage: npm run ops -- status ');
    const notJson = join(dir, 'not-json.json');
    writeFileSync(notJson, '{"AWS_REGION": ');
    expectUsageError(await ops('status', '--env-file', notJson), /^ops: --env-file: .*not-json\.json is not JSON: /, 'usage: npm run ops -- status ');
    const badVariable = join(dir, 'bad-variable.json');
    writeFileSync(badVariable, JSON.stringify({ GRANTS_FILE: join(root, 'grants.json'), LEASE_WAIT_MS: 'soon' }));
    expectUsageError(await ops('status', '--env-file', badVariable), 'bad configuration: LEASE_WAIT_MS: must be a whole number, got "soon"', 'usage: npm run ops -- status ');
  });

  it('conflicting options, before anything is read or called', async () => {
    expectUsageError(await ops('status', '--local', '--stage', 'prod'), 'say where only once: --stage and --local both given', 'usage: npm run ops -- status ');
    expectUsageError(await ops('status', '--local', '--region', 'eu-west-1'), "--region goes with --stage only: --local's environment file sets the region", 'usage: npm run ops -- status ');
    expectUsageError(await ops('--', 'status', '--env-file', 'e.json', '--local'), 'say where only once: --local and --env-file both given', 'usage: npm run ops -- status ');
    expectUsageError(await ops('status', '--stage', 'prod', '--json', '--verbose'), '--json and --verbose both given: the logs would mix with the JSON on stdout', 'usage: npm run ops -- status ');
  });

  it('a broken grants file', async () => {
    expectUsageError(
      await ops('status', '--stage', 'prod', '--grants', 'test/fixtures/grants-broken.json'),
      /^ops: bad configuration: GRANTS_FILE: .*grants-broken\.json: grants\[0\]\.scopes\[1\]: /,
      'usage: npm run ops -- status ',
    );
  });
});

describe('npm run ops: a command that fails while running', () => {
  it('is one line naming the command, the error, the table, region, endpoint, credential source and cause, exit 1', async () => {
    // A DynamoDB endpoint where nothing listens: the arguments and configuration are good, the call is not.
    const envFile = join(dir, 'unreachable.json');
    writeFileSync(
      envFile,
      JSON.stringify({ AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', GRANTS_FILE: join(root, 'grants.json') }),
    );
    const result = await ops('status', '--env-file', envFile);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^status failed: \w+: .+\n$/);
    expect(result.stderr).toMatch(
      /^status failed: StoreUnavailableError: DynamoDB Scan failed \(\w+\); DynamoDB table token-vendor-local, region eu-west-1 \(AWS_REGION\), endpoint http:\/\/127\.0\.0\.1:9 \(AWS_ENDPOINT_URL\), credentials: environment variables \(AWS_ACCESS_KEY_ID: long-term\); cause: \w+: .*ECONNREFUSED/,
    );
    expect(result.stderr).not.toMatch(STACK_FRAME);
  });

  it('with --stage and no region or credentials anywhere, says so rather than `DynamoDB Scan failed (Error)`', async () => {
    const result = await ops('status', '--stage', 'prod');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n')).toEqual([expect.stringMatching(/^status failed: StoreUnavailableError: DynamoDB Scan failed \(\w+\); DynamoDB table token-vendor-prod, region none \(set --region, AWS_REGION or region in your AWS profile\), .*credentials: none found \(CredentialsProviderError: .*; cause: \w+: Region is missing$/), '']);
  });

  it('with --region and no credentials: the region, the SDK’s endpoint for it, and what the credential chain tried', async () => {
    const result = await ops('status', '--stage', 'prod', '--region', 'eu-central-1');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^status failed: StoreUnavailableError: DynamoDB Scan failed \(CredentialsProviderError\); DynamoDB table token-vendor-prod, region eu-central-1 \(AWS_REGION\), endpoint https:\/\/dynamodb\.eu-central-1\.amazonaws\.com \(the SDK's default\), credentials: none found \(CredentialsProviderError: Could not load credentials from any providers; no AWS_PROFILE or access key variables: the default profile, then no instance metadata \(AWS_EC2_METADATA_DISABLED\)\); cause: CredentialsProviderError: /,
    );
    expect(result.stderr.trimEnd()).not.toContain('\n');
  });
});
