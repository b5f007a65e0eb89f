import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../../functions/config.js';

const dir = mkdtempSync(join(tmpdir(), 'config-test-'));
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
    expect(config).toMatchObject({ tableName: 'tokens', earlyExpirySeconds: 120, refreshAheadRatio: 0.25, idpTimeoutMs: 5000, idpDeadlineMs: 10000, leaseTtlMs: 25000, leaseWaitMs: 12000, quotaPerClientPerHour: 60 });
    expect(config.grants.grants).toHaveLength(1);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it.each([
    [{}, 'TOKEN_TABLE_NAME: is required'],
    [{ TOKEN_TABLE_NAME: 't' }, 'TOKEN_SEAL_KEY_ID: is required'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', IDP_TIMEOUT_MS: '5s' }, 'IDP_TIMEOUT_MS: must be a whole number, got "5s"'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', EARLY_EXPIRY_SECONDS: '99999' }, 'EARLY_EXPIRY_SECONDS: must be between 1 and 3600'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', IDP_TIMEOUT_MS: '8000', LEASE_TTL_MS: '15000' }, 'LEASE_TTL_MS: must be at least IDP_DEADLINE_MS + 2 × IDP_TIMEOUT_MS + 1000 (27000)'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', REFRESH_AHEAD_PERCENT: '95' }, 'REFRESH_AHEAD_PERCENT: must be between 0 and 90'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', GRANTS_FILE: 'missing.json' }, 'GRANTS_FILE: cannot read'],
    [{ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', GRANTS_FILE: 'bad.json' }, 'GRANTS_FILE: '],
  ])('fails the cold start naming the variable (%j)', (env, message) => {
    expect(() => loadConfig(env, dir)).toThrow(ConfigError);
    expect(() => loadConfig(env, dir)).toThrow(message);
  });

  it('names the grants field in a bad grants file', () => {
    expect(() => loadConfig({ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k', GRANTS_FILE: 'bad.json' }, dir)).toThrow('clients.c.secretId: must be a non-empty string');
  });

  it('reads exactly CONFIG_VARIABLES (the list the deployment is checked against)', () => {
    const read = new Set<string>();
    const env = new Proxy({ TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k' } as Record<string, string | undefined>, {
      get(target, key) {
        if (typeof key === 'string') read.add(key);
        return target[key as string];
      },
    });
    loadConfig(env, dir);
    expect([...read].sort()).toEqual([...CONFIG_VARIABLES].sort());
  });
});
