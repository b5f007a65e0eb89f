import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, RUNTIME_VARIABLES, loadConfig } from '../../functions/config.js';
import { TEST_TIME_SCALE, stageParamDefaults, deployedSettings, scaled } from '../helpers/deployedSettings.js';

const dir = mkdtempSync(join(tmpdir(), 'config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(
  join(dir, 'grants.json'),
  JSON.stringify({
    clients: { c: { domain: 'tenant.auth0.com', secretId: 's' } },
    grants: [{ principals: ['arn:aws:iam::111122223333:role/app'], client: 'c', audience: 'https://api', scopes: ['read'] }],
  }),
);
writeFileSync(join(dir, 'bad.json'), JSON.stringify({ clients: { c: { domain: 'tenant.auth0.com' } }, grants: [] }));

describe('loadConfig', () => {
  it('parses defaults into a frozen object, grants relative to the task root', () => {
    const config = loadConfig({ TOKEN_TABLE_NAME: 'tokens', TOKEN_SEAL_KEY_ID: 'alias/k' }, dir);
    expect(config).toMatchObject({ tableName: 'tokens', earlyExpirySeconds: 120, refreshAheadRatio: 0.25, idpTimeoutMs: 2000, idpDeadlineMs: 10000, idpAttemptMs: 4000, leaseTtlMs: 25000, leaseWaitMs: 12000, quotaPerClientPerHour: 60 });
    expect(config.grants.grants).toHaveLength(1);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it.each([
    [{}, 'TOKEN_TABLE_NAME: is required'],
    [{ TOKEN_TABLE_NAME: 't' }, 'TOKEN_SEAL_KEY_ID: is required'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', IDP_TIMEOUT_MS: '5s' }, 'IDP_TIMEOUT_MS: must be a whole number, got "5s"'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', EARLY_EXPIRY_SECONDS: '99999' }, 'EARLY_EXPIRY_SECONDS: must be between 1 and 3600'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', IDP_TIMEOUT_MS: '4000', IDP_DEADLINE_MS: '18000', LEASE_TTL_MS: '15000' }, 'LEASE_TTL_MS: must be at least IDP_DEADLINE_MS + 2 × IDP_TIMEOUT_MS + 1000 (27000)'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', REFRESH_AHEAD_PERCENT: '95' }, 'REFRESH_AHEAD_PERCENT: must be between 0 and 90'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', GRANTS_FILE: 'missing.json' }, 'GRANTS_FILE: cannot read'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', GRANTS_FILE: 'bad.json' }, 'GRANTS_FILE: '],
  ])('fails the cold start naming the variable (%j)', (env, message) => {
    expect(() => loadConfig(env, dir)).toThrow(ConfigError);
    expect(() => loadConfig(env, dir)).toThrow(message);
  });

  it.each([
    // the deadline lowered under the deployed timeout
    [{ IDP_DEADLINE_MS: '5000' }, 'IDP_DEADLINE_MS: must leave room for one retry: at least 2 × 2 × IDP_TIMEOUT_MS + RETRY_BASE_MS (8100), got 5000'],
    // the timeout raised under the deployed deadline
    [{ IDP_TIMEOUT_MS: '5000' }, 'IDP_DEADLINE_MS: must leave room for one retry: at least 2 × 2 × IDP_TIMEOUT_MS + RETRY_BASE_MS (20100), got 10000'],
    // the first pause counts too
    [{ RETRY_BASE_MS: '2001' }, 'IDP_DEADLINE_MS: must leave room for one retry: at least 2 × 2 × IDP_TIMEOUT_MS + RETRY_BASE_MS (10001), got 10000'],
    // what serverless.yml deployed before: one 500 was a 503 after a single attempt
    [{ IDP_TIMEOUT_MS: '5000', IDP_DEADLINE_MS: '10000', LEASE_TTL_MS: '25000' }, 'IDP_DEADLINE_MS: must leave room for one retry'],
  ])('refuses a deadline without room for one whole retry after one whole failed attempt (%j)', (settings, message) => {
    const env = { TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', ...settings };
    expect(() => loadConfig(env, dir)).toThrow(ConfigError);
    expect(() => loadConfig(env, dir)).toThrow(message);
  });

  it('accepts a deadline with exactly that room', () => {
    const config = loadConfig({ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', IDP_TIMEOUT_MS: '2000', RETRY_BASE_MS: '100', IDP_DEADLINE_MS: '8100' }, dir);
    expect(config.idpDeadlineMs).toBe(2 * config.idpAttemptMs + config.retryBaseMs);
  });

  it('names the grants field in a bad grants file', () => {
    expect(() => loadConfig({ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', GRANTS_FILE: 'bad.json' }, dir)).toThrow('clients.c.secretId: must be a non-empty string');
  });

  it('reads exactly CONFIG_VARIABLES (the list the deployment is checked against) and the runtime\'s own', () => {
    const read = new Set<string>();
    const env = new Proxy({ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k' } as Record<string, string | undefined>, {
      get(target, key) {
        if (typeof key === 'string') read.add(key);
        return target[key as string];
      },
    });
    loadConfig(env, dir);
    expect([...read].sort()).toEqual([...CONFIG_VARIABLES, ...RUNTIME_VARIABLES].sort());
  });
});

describe('the deployed settings (serverless.yml)', () => {
  const base = { TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k' };
  const settingsOf = (env: Record<string, string>) => ({ ...loadConfig(env, dir), grants: undefined });

  it('are config.ts defaults: setting any of them changes nothing', () => {
    // The packaged template is checked the same way in test/deploy/serverless.test.ts.
    const defaults = settingsOf(base);
    const drift = Object.entries(deployedSettings()).filter(([name, value]) => !isDeepStrictEqual(settingsOf({ ...base, [name]: value }), defaults));
    expect(drift).toEqual([]);
  });

  it('are valid on the suites\' clock, and a faster clock keeps every ratio', () => {
    const at = (factor: number) => loadConfig({ ...base, ...scaled(factor) }, dir);
    const deployed = at(1);
    const fast = at(TEST_TIME_SCALE);
    expect(fast.idpTimeoutMs / deployed.idpTimeoutMs).toBeCloseTo(TEST_TIME_SCALE);
    expect(fast.idpDeadlineMs / fast.idpAttemptMs).toBeCloseTo(deployed.idpDeadlineMs / deployed.idpAttemptMs);
    expect(fast.leaseTtlMs / fast.idpDeadlineMs).toBeCloseTo(deployed.leaseTtlMs / deployed.idpDeadlineMs);
    expect(fast.earlyExpirySeconds / fast.refresherLookaheadMs).toBeCloseTo(deployed.earlyExpirySeconds / deployed.refresherLookaheadMs);
    expect(fast.quotaPerClientPerHour * TEST_TIME_SCALE).toBe(deployed.quotaPerClientPerHour);
    expect(fast.refreshAheadRatio).toBe(deployed.refreshAheadRatio);
  });

  it('infra/deployment.cjs refuses at packaging what loadConfig refuses at cold start, with its message', async () => {
    const deployment = createRequire(import.meta.url)('../../infra/deployment.cjs') as (ctx: {
      resolveVariable: (v: string) => Promise<unknown>;
      resolveConfigurationProperty: (path: string[]) => Promise<unknown>;
    }) => Promise<unknown>;
    const deployedEnv = { ...base, ...deployedSettings(), POWERTOOLS_SERVICE_NAME: 'token-vendor-test' };
    // serverless.yml's stage parameters at their defaults: only the environment varies here.
    const params = stageParamDefaults();
    const variables: Record<string, unknown> = { 'sls:stage': 'test', 'self:provider.region': 'eu-west-1' };
    const packaging = (environment: Record<string, string>) =>
      deployment({
        resolveVariable: async (v) => {
          if (v === 'self:provider.environment') return environment;
          const param = /^param:(\w+), ''$/.exec(v);
          return param !== null ? (params[param[1] ?? ''] ?? '') : variables[v];
        },
        resolveConfigurationProperty: async () => ({ default: params }),
      });
    await expect(packaging(deployedEnv)).resolves.toMatchObject({ grantsFile: expect.stringMatching(/grants\.json$/) });
    const bad: Array<Record<string, string>> = [{ IDP_DEADLINE_MS: '5000' }, { IDP_TIMEOUT_MS: '5000' }, { RETRY_BASE_MS: '2001' }, { EARLY_EXPIRY_SECONDS: '0' }, { IDP_TIMEOUT_MS: '5s' }];
    for (const settings of bad) {
      const env = { ...deployedEnv, ...settings };
      let coldStart = '';
      try {
        loadConfig(env, dir);
      } catch (error) {
        coldStart = (error as Error).message;
      }
      expect(coldStart).not.toBe('');
      await expect(packaging(env)).rejects.toThrow(`environment rejected: ${coldStart}`);
    }
  });
});
