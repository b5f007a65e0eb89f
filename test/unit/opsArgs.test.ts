/**
 * The ops CLI's argument parsing (pure) and its configuration step (files only, never AWS).
 * The CLI as a separate process: test/integration/opsCli.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS, GENERAL_USAGE, LOCAL_ENV_FILE, commandUsage, parseOpsArgs, type OpsRun } from '../../ops/args.js';
import { OpsAwsCallError, credentialHint, credentialSourceOf, endpointFor, failedService, rootCause } from '../../ops/awsContext.js';
import { table } from '../../ops/table.js';
import { resolveTarget } from '../../ops/target.js';

describe('parseOpsArgs: help', () => {
  it.each([[['--help']], [['-h']], [['help']], [['--json', '--help']], [['help', '--bogus']]])('%j prints the general usage', (argv) => {
    expect(parseOpsArgs(argv)).toEqual({ kind: 'help', text: GENERAL_USAGE });
  });

  it.each(COMMANDS.map((c) => [c]))('help %s, %s --help and %s -h print that command’s usage', (command) => {
    const expected = { kind: 'help', text: commandUsage(command) };
    expect(parseOpsArgs(['help', command])).toEqual(expected);
    expect(parseOpsArgs([command, '--help'])).toEqual(expected);
    expect(parseOpsArgs(['-h', command])).toEqual(expected);
    // Help wins over what would otherwise be wrong: the user asked how to use it.
    expect(parseOpsArgs([command, '--bogus', '--help'])).toEqual(expected);
    expect(parseOpsArgs([command, '--bogus', '--client', 'c', '--help'])).toEqual(expected);
  });

  it('the general usage names every command, every option and the exit codes', () => {
    for (const word of [...COMMANDS, '--client', '--audience', '--stage', '--region', '--local', '--env-file', '--grants', '--json', '--verbose', '--help', 'exit status: 0', '2 bad usage']) {
      expect(GENERAL_USAGE).toContain(word);
    }
  });

  it('a command’s usage lists only the options it takes', () => {
    expect(commandUsage('flush')).toMatch(/^usage: npm run ops -- flush --client C \[--audience A\] \[--organization O\] \(--stage S \| --local \| --env-file F\)/);
    expect(commandUsage('flush')).toContain('--audience A');
    expect(commandUsage('rotate')).not.toContain('--organization');
    expect(commandUsage('status')).not.toContain('--organization');
    expect(commandUsage('rotate')).toContain('--client C');
    expect(commandUsage('rotate')).not.toContain('--audience');
    expect(commandUsage('status')).not.toContain('--client');
    expect(commandUsage('status')).not.toContain('--audience');
  });
});

describe('parseOpsArgs: what to run', () => {
  it('flush and refresh take --organization (issue 12); status and rotate refuse it', () => {
    expect(parseOpsArgs(['flush', '--client', 'orders', '--organization', 'org_acme1', '--local'])).toMatchObject({ kind: 'run', command: 'flush', client: 'orders', organization: 'org_acme1' });
    expect(parseOpsArgs(['refresh', '--client', 'orders', '--organization=acme', '--local'])).toMatchObject({ kind: 'run', command: 'refresh', organization: 'acme' });
    expect(parseOpsArgs(['status', '--organization', 'org_acme1', '--local'])).toMatchObject({ kind: 'error', message: 'status takes no --organization' });
    expect(parseOpsArgs(['rotate', '--client', 'orders', '--organization', 'org_acme1', '--local'])).toMatchObject({ kind: 'error', message: 'rotate takes no --organization' });
    expect(parseOpsArgs(['flush', '--client', 'orders', '--local'])).not.toHaveProperty('organization');
  });

  it('reads every option, before or after the command, as `--name value` or `--name=value`', () => {
    expect(parseOpsArgs(['--json', 'refresh', '--client', 'orders', '--audience=https://orders.example.com', '--stage', 'prod', '--region', 'eu-west-1', '--grants', 'g.json'])).toEqual({
      kind: 'run',
      command: 'refresh',
      client: 'orders',
      audience: 'https://orders.example.com',
      target: { kind: 'stage', stage: 'prod', region: 'eu-west-1' },
      grants: 'g.json',
      json: true,
      verbose: false,
    } satisfies OpsRun);
    expect(parseOpsArgs(['status', '--stage', 'prod', '--verbose'])).toEqual({ kind: 'run', command: 'status', target: { kind: 'stage', stage: 'prod' }, json: false, verbose: true });
  });

  it('--local is the local stack’s environment file; --env-file is any', () => {
    expect(parseOpsArgs(['status', '--local'])).toEqual({ kind: 'run', command: 'status', target: { kind: 'env-file', path: LOCAL_ENV_FILE, local: true }, json: false, verbose: false });
    expect(parseOpsArgs(['status', '--env-file', 'e.json'])).toMatchObject({ target: { kind: 'env-file', path: 'e.json', local: false } });
  });

  it('a leading -- is skipped (it keeps Node from reading --env-file itself); a later one ends the options', () => {
    expect(parseOpsArgs(['--', 'status', '--env-file', 'e.json'])).toMatchObject({ kind: 'run', command: 'status', target: { kind: 'env-file', path: 'e.json' } });
    expect(parseOpsArgs(['--', '--help'])).toEqual({ kind: 'help', text: GENERAL_USAGE });
    expect(parseOpsArgs(['status', '--local', '--', '--json'])).toEqual({ kind: 'error', message: 'unexpected argument "--json"', usage: commandUsage('status') });
  });

  it('a value may start with a dash when given with =', () => {
    expect(parseOpsArgs(['flush', '--client=-odd', '--stage', 's'])).toMatchObject({ kind: 'run', client: '-odd' });
  });
});

describe('parseOpsArgs: bad usage is one line naming the problem, with the usage to print under it', () => {
  it.each([
    [[], 'say which command: status, flush, refresh, rotate', GENERAL_USAGE],
    [['bogus'], 'unknown command "bogus"; commands: status, flush, refresh, rotate', GENERAL_USAGE],
    [['bogus', '--help'], 'unknown command "bogus"; commands: status, flush, refresh, rotate', GENERAL_USAGE],
    [['help', 'bogus'], 'unknown command "bogus"; commands: status, flush, refresh, rotate', GENERAL_USAGE],
    [['help', 'flush', 'extra'], 'unexpected argument "extra"', commandUsage('flush')],
    [['--bogus'], 'unknown option --bogus', GENERAL_USAGE],
    [['status', '--local', '--bogus'], 'unknown option --bogus', commandUsage('status')],
    [['status', '--local', '-x'], 'unknown option -x', commandUsage('status')],
    [['status', '--bogus', '--json=1', '--local'], 'unknown option --bogus', commandUsage('status')],
    [['status', '--local', '--bo\ngus'], 'unknown option "--bo\\ngus"', commandUsage('status')],
    [['flush', '--stage', 's', '--client'], '--client needs a value', commandUsage('flush')],
    [['flush', '--client', '--stage', 's'], '--client needs a value', commandUsage('flush')],
    [['flush', '--client=', '--stage', 's'], '--client needs a value', commandUsage('flush')],
    [['flush', '--client', 'a', '--client', 'b', '--stage', 's'], '--client is given twice', commandUsage('flush')],
    [['status', '--local', '--json=yes'], '--json takes no value', commandUsage('status')],
    [['status', '--local', '--help=yes'], '--help takes no value', commandUsage('status')],
    [['status', '--local', 'extra'], 'unexpected argument "extra"', commandUsage('status')],
    [['flush', '--stage', 's'], 'flush needs --client <name from the grants file>', commandUsage('flush')],
    [['refresh', '--stage', 's'], 'refresh needs --client <name from the grants file>', commandUsage('refresh')],
    [['rotate', '--stage', 's'], 'rotate needs --client <name from the grants file>', commandUsage('rotate')],
    [['status', '--client', 'c', '--stage', 's'], 'status takes no --client', commandUsage('status')],
    [['rotate', '--client', 'c', '--audience', 'a', '--stage', 's'], 'rotate takes no --audience', commandUsage('rotate')],
    [['flush', '--client', 'c'], 'say where: --stage <stage>, --local or --env-file <file>', commandUsage('flush')],
    [['status', '--stage', 'prod', '--local'], 'say where only once: --stage and --local both given', commandUsage('status')],
    [['status', '--local', '--env-file', 'e.json'], 'say where only once: --local and --env-file both given', commandUsage('status')],
    [['status', '--stage', 'prod', '--env-file', 'e.json'], 'say where only once: --stage and --env-file both given', commandUsage('status')],
    [['status', '--local', '--region', 'eu-west-1'], "--region goes with --stage only: --local's environment file sets the region", commandUsage('status')],
    [['flush', '--client', 'c', '--env-file', 'e.json', '--region=eu-west-1'], "--region goes with --stage only: --env-file's environment file sets the region", commandUsage('flush')],
    [['status', '--stage', 'prod', '--region', 'west'], '--region: west is not a region name like eu-west-1', commandUsage('status')],
    [['status', '--stage', 'prod', '--region', 'eu-west-1', '--region', 'us-east-1'], '--region is given twice', commandUsage('status')],
    [['status', '--local', '--json', '--verbose'], '--json and --verbose both given: the logs would mix with the JSON on stdout', commandUsage('status')],
  ])('%j', (argv, message, usage) => {
    const parsed = parseOpsArgs(argv);
    expect(parsed).toEqual({ kind: 'error', message, usage });
    expect(message).not.toContain('\n');
  });
});

describe('resolveTarget: the configuration, checked before anything is built', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ops-args-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const grants = join(dir, 'grants.json');
  writeFileSync(
    grants,
    JSON.stringify({
      clients: { orders: { domain: 'tenant.auth0.com', secretId: 's/orders' }, billing: { domain: 'tenant.auth0.com', secretId: 's/billing' } },
      grants: [{ principals: ['arn:aws:iam::111122223333:role/app'], client: 'orders', audience: 'https://orders', scopes: ['read'] }],
    }),
  );
  const file = (name: string, text: string): string => {
    writeFileSync(join(dir, name), text);
    return name;
  };
  const run = (args: string[]): OpsRun => {
    const parsed = parseOpsArgs(args);
    if (parsed.kind !== 'run') throw new Error(`not a run: ${JSON.stringify(parsed)}`);
    return parsed;
  };

  it('--stage names the table and key after the stage; the environment file’s names win', () => {
    const staged = resolveTarget(run(['flush', '--client', 'orders', '--stage', 'prod', '--grants', grants]), {}, dir);
    expect(staged).toMatchObject({ kind: 'ok', fileEnv: {}, config: { tableName: 'token-vendor-prod', sealKeyId: 'alias/token-vendor-prod', grantsFile: grants } });
    const envFile = file('env.json', JSON.stringify({ TOKEN_TABLE_NAME: 'tokens', GRANTS_FILE: grants, AWS_REGION: 'eu-west-1' }));
    const local = resolveTarget(run(['status', '--env-file', envFile]), {}, dir);
    expect(local).toMatchObject({ kind: 'ok', fileEnv: { AWS_REGION: 'eu-west-1' }, config: { tableName: 'tokens', sealKeyId: 'alias/token-vendor-local' } });
  });

  it.each([
    [['flush', '--client', 'nope', '--stage', 'p', '--grants', grants], `no client "nope" in ${grants}; known: orders, billing`],
    [['status', '--stage', 'p', '--grants', join(dir, 'missing.json')], `bad configuration: GRANTS_FILE: cannot read ${join(dir, 'missing.json')}`],
    [['status', '--env-file', 'missing.json'], '--env-file: missing.json cannot be read (ENOENT)'],
    [['status', '--local'], `--local: ${LOCAL_ENV_FILE} cannot be read (ENOENT): is the local stack running (npm start)?`],
  ])('%j → %s', (args, message) => {
    expect(resolveTarget(run(args), {}, dir)).toEqual({ kind: 'error', message });
  });

  it.each([
    ['not JSON', 'bad-json.json', '{"a":', /^--env-file: bad-json\.json is not JSON: /],
    ['not an object', 'bad-array.json', '["A=b"]', /^--env-file: bad-array\.json must be a JSON object of variable names to strings$/],
    ['a value not a string', 'bad-value.json', '{"IDP_TIMEOUT_MS": 5000}', /^--env-file: bad-value\.json must be a JSON object of variable names to strings; IDP_TIMEOUT_MS is not a string$/],
  ])('an environment file %s is a bad configuration', (_what, name, text, message) => {
    file(name, text);
    const resolved = resolveTarget(run(['status', '--env-file', name]), {}, dir);
    expect(resolved.kind).toBe('error');
    expect((resolved as { message: string }).message).toMatch(message);
  });

  it('a bad variable or grants file is named, as loadConfig names it', () => {
    const env = file('env-bad-var.json', JSON.stringify({ GRANTS_FILE: grants, IDP_TIMEOUT_MS: '5s' }));
    expect(resolveTarget(run(['status', '--env-file', env]), {}, dir)).toEqual({ kind: 'error', message: 'bad configuration: IDP_TIMEOUT_MS: must be a whole number, got "5s"' });
    const broken = file('broken-grants.json', JSON.stringify({ clients: {}, grants: [] }));
    expect(resolveTarget(run(['status', '--stage', 'p', '--grants', broken]), {}, dir)).toMatchObject({ kind: 'error', message: expect.stringMatching(/^bad configuration: GRANTS_FILE: .*broken-grants\.json: clients: /) });
  });
});

describe('table: every printed table has a header row', () => {
  it('names each column, pads each to its widest cell, and trims the line ends', () => {
    expect(table(['outcome', 'audience', 'scopes'], [['refreshed', 'https://orders', 'read write'], ['ungranted', 'https://b', '']], '  ')).toEqual([
      '  outcome    audience        scopes',
      '  refreshed  https://orders  read write',
      '  ungranted  https://b',
    ]);
    expect(table(['lease', 'until'], [])).toEqual(['lease  until']);
  });
});

describe('awsContext: what a failed AWS call names', () => {
  const config = { tableName: 'token-vendor-prod', sealKeyId: 'alias/token-vendor-prod' };
  const wrapped = (message: string) => new Error(message, { cause: new Error('inner') });

  it.each([
    ['DynamoDB Scan failed (Error)', { service: 'DynamoDB', resource: 'table token-vendor-prod' }],
    ['KMS Decrypt failed (AccessDeniedException)', { service: 'KMS', resource: 'key alias/token-vendor-prod' }],
    ['Secrets Manager failed reading token-vendor/orders-m2m (ThrottlingException)', { service: 'Secrets Manager', resource: 'secret token-vendor/orders-m2m' }],
    ['secret token-vendor/orders-m2m (AWSCURRENT) cannot be read (ResourceNotFoundException)', { service: 'Secrets Manager', resource: 'secret token-vendor/orders-m2m' }],
  ])('the service and resource of %s, from the adapter’s message', (message, expected) => {
    expect(failedService(new Error('outer', { cause: wrapped(message) }), config)).toEqual(expected);
  });

  it('no AWS service for a failure that is not an AWS call, and the one an ops call names itself', () => {
    expect(failedService(new Error('Auth0 answered 401'), config)).toBeUndefined();
    expect(failedService(new OpsAwsCallError('Secrets Manager', 'secret s/x', 'Secrets Manager RotateSecret failed (AccessDeniedException)', { cause: new Error('x') }), config)).toEqual({ service: 'Secrets Manager', resource: 'secret s/x' });
  });

  it('the innermost cause, by its code when its message is empty (refused connections on two addresses)', () => {
    expect(rootCause(new Error('DynamoDB Scan failed (Error)', { cause: new Error('connect ECONNREFUSED 127.0.0.1:9') }))).toBe('Error: connect ECONNREFUSED 127.0.0.1:9');
    const refused = Object.assign(new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:9'), { code: 'ECONNREFUSED' })], ''), { code: 'ECONNREFUSED' });
    expect(rootCause(new Error('outer', { cause: refused }))).toBe('AggregateError: connect ECONNREFUSED ::1:9');
    expect(rootCause(Object.assign(new Error(''), { code: 'ETIMEDOUT' }))).toBe('Error: ETIMEDOUT');
  });

  it('the endpoint: the service’s own variable, then AWS_ENDPOINT_URL, then the SDK’s default for the region', () => {
    expect(endpointFor('DynamoDB', { AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:4566', AWS_ENDPOINT_URL: 'http://x' }, 'eu-west-1')).toBe('http://127.0.0.1:4566 (AWS_ENDPOINT_URL_DYNAMODB)');
    expect(endpointFor('Secrets Manager', { AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:4566', AWS_ENDPOINT_URL: 'http://x' }, 'eu-west-1')).toBe('http://x (AWS_ENDPOINT_URL)');
    expect(endpointFor('KMS', {}, 'eu-west-1')).toBe("https://kms.eu-west-1.amazonaws.com (the SDK's default)");
    expect(endpointFor('KMS', {}, undefined)).toBe("the SDK's default for the region");
  });

  it('the credential source, from the provider of the default chain that answered', () => {
    expect(credentialSourceOf({ CREDENTIALS_ENV_VARS: 'g' }, { AWS_SESSION_TOKEN: 't' })).toBe('environment variables (AWS_ACCESS_KEY_ID and AWS_SESSION_TOKEN: temporary)');
    expect(credentialSourceOf({ CREDENTIALS_ENV_VARS: 'g' }, {})).toBe('environment variables (AWS_ACCESS_KEY_ID: long-term)');
    expect(credentialSourceOf({ CREDENTIALS_PROFILE: 'n', CREDENTIALS_PROFILE_SSO: 'r' }, { AWS_PROFILE: 'ops' })).toBe('SSO (profile ops)');
    expect(credentialSourceOf({ CREDENTIALS_PROFILE: 'n', CREDENTIALS_PROFILE_SOURCE_PROFILE: 'o' }, {})).toBe('a role assumed through profile default');
    expect(credentialSourceOf({ CREDENTIALS_PROFILE: 'n', CREDENTIALS_PROFILE_PROCESS: 'v' }, {})).toBe('credential_process (profile default)');
    expect(credentialSourceOf({ CREDENTIALS_HTTP: 'z' }, {})).toBe('the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)');
    expect(credentialSourceOf({ CREDENTIALS_PROFILE: 'n' }, { AWS_PROFILE: 'dev' })).toBe('the keys of profile dev (shared credentials file)');
    expect(credentialSourceOf(undefined, {})).toBeUndefined();
  });

  it('what the environment points the chain at, when it found nothing', () => {
    expect(credentialHint({ AWS_PROFILE: 'ops', AWS_ACCESS_KEY_ID: 'AKIA' })).toBe('AWS_PROFILE=ops (AWS_ACCESS_KEY_ID is set too: the SDK uses the profile)');
    expect(credentialHint({ AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 's' })).toBe('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set');
    expect(credentialHint({ AWS_WEB_IDENTITY_TOKEN_FILE: '/t' })).toBe('AWS_WEB_IDENTITY_TOKEN_FILE set');
    expect(credentialHint({ AWS_EC2_METADATA_DISABLED: 'true' })).toBe('no AWS_PROFILE or access key variables: the default profile, then no instance metadata (AWS_EC2_METADATA_DISABLED)');
  });
});
