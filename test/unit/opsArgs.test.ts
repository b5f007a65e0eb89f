/**
 * The ops CLI's argument parsing (pure) and its configuration step (files only, never AWS).
 * The CLI as a separate process: test/integration/opsCli.test.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, GENERAL_USAGE, LOCAL_ENV_FILE, commandUsage, parseOpsArgs, type OpsRun } from '../../ops/args.js';
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
    for (const word of [...COMMANDS, '--client', '--audience', '--stage', '--local', '--env-file', '--grants', '--json', '--verbose', '--help', 'exit status: 0', '2 bad usage']) {
      expect(GENERAL_USAGE).toContain(word);
    }
  });

  it('a command’s usage lists only the options it takes', () => {
    expect(commandUsage('flush')).toMatch(/^usage: npm run ops -- flush --client C \[--audience A\] \(--stage S \| --local \| --env-file F\)/);
    expect(commandUsage('flush')).toContain('--audience A');
    expect(commandUsage('rotate')).toContain('--client C');
    expect(commandUsage('rotate')).not.toContain('--audience');
    expect(commandUsage('status')).not.toContain('--client');
    expect(commandUsage('status')).not.toContain('--audience');
  });
});

describe('parseOpsArgs: what to run', () => {
  it('reads every option, before or after the command, as `--name value` or `--name=value`', () => {
    expect(parseOpsArgs(['--json', 'refresh', '--client', 'orders', '--audience=https://orders.example.com', '--stage', 'prod', '--grants', 'g.json', '--verbose'])).toEqual({
      kind: 'run',
      command: 'refresh',
      client: 'orders',
      audience: 'https://orders.example.com',
      target: { kind: 'stage', stage: 'prod' },
      grants: 'g.json',
      json: true,
      verbose: true,
    } satisfies OpsRun);
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
  ])('%j', (argv, message, usage) => {
    const parsed = parseOpsArgs(argv);
    expect(parsed).toEqual({ kind: 'error', message, usage });
    expect(message).not.toContain('\n');
  });
});

describe('resolveTarget: the configuration, checked before anything is built', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ops-args-'));
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
