/**
 * The credentials adapter's own cache, over a fake Secrets Manager client and a fake clock: one
 * read per max age, one read shared by concurrent callers, AWSPENDING never cached (so never served
 * later as AWSCURRENT), the last good value kept through an outage.
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import { SecretsManagerCredentials } from '../../functions/adapters/secretsManagerCredentials.js';
import { ConfigError, StoreUnavailableError } from '../../functions/core/errors.js';

const SECRET = 'token-vendor/orders-m2m';
const value = (clientSecret: string) => JSON.stringify({ client_id: 'orders-client', client_secret: clientSecret });

/** A Secrets Manager that answers GetSecretValue from `stages`, recording the stage of each call. */
function fakeSecretsManager(stages: Record<string, string | Error | undefined>) {
  const calls: string[] = [];
  let gate: Promise<void> | undefined;
  let open = () => {};
  const client = {
    async send(command: unknown) {
      if (!(command instanceof GetSecretValueCommand)) throw new Error('unexpected command');
      const stage = command.input.VersionStage ?? 'AWSCURRENT';
      calls.push(stage);
      await gate;
      const answer = stages[stage];
      if (answer instanceof Error) throw answer;
      if (answer === undefined) throw Object.assign(new Error(`no ${stage}`), { name: 'ResourceNotFoundException' });
      return { SecretString: answer };
    },
  };
  return {
    client: client as unknown as SecretsManagerClient,
    calls,
    stages,
    /** hold every read until `open()` */
    hold: () => void (gate = new Promise<void>((resolve) => (open = resolve))),
    open: () => open(),
  };
}

function setup(stages: Record<string, string | Error | undefined>, maxAgeSeconds = 300) {
  const clock = { t: 1_000_000 };
  const sm = fakeSecretsManager(stages);
  const credentials = new SecretsManagerCredentials({ client: sm.client, maxAgeSeconds, now: () => clock.t });
  return { clock, sm, credentials };
}

const unavailable = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { name: 'Error', code: 'ECONNREFUSED' });

describe('SecretsManagerCredentials', () => {
  it('reads AWSCURRENT once per max age', async () => {
    const { clock, sm, credentials } = setup({ AWSCURRENT: value('one') });
    expect(await credentials.get(SECRET)).toMatchObject({ kind: 'secret', clientId: 'orders-client', clientSecret: 'one' });
    clock.t += 299_999;
    await credentials.get(SECRET);
    expect(sm.calls).toEqual(['AWSCURRENT']);
    sm.stages.AWSCURRENT = value('two');
    clock.t += 1;
    expect(await credentials.get(SECRET)).toMatchObject({ clientSecret: 'two' });
    expect(sm.calls).toEqual(['AWSCURRENT', 'AWSCURRENT']);
  });

  it('shares one read between concurrent callers', async () => {
    const { sm, credentials } = setup({ AWSCURRENT: value('one') });
    sm.hold();
    const reads = Array.from({ length: 50 }, () => credentials.get(SECRET));
    sm.open();
    const all = await Promise.all(reads);
    expect(new Set(all.map((c) => (c.kind === 'secret' ? c.clientSecret : ''))).size).toBe(1);
    expect(sm.calls).toEqual(['AWSCURRENT']);
  });

  it('with a max age of 0, reads every time', async () => {
    const { sm, credentials } = setup({ AWSCURRENT: value('one') }, 0);
    await credentials.get(SECRET);
    await credentials.get(SECRET);
    expect(sm.calls).toEqual(['AWSCURRENT', 'AWSCURRENT']);
  });

  it('offers AWSCURRENT read again, then AWSPENDING, and never serves the pending value later as current', async () => {
    const { sm, credentials } = setup({ AWSCURRENT: value('old'), AWSPENDING: value('new') });
    const old = await credentials.get(SECRET);
    const alternatives = await credentials.alternatives(SECRET, old);
    expect(alternatives.map((c) => (c.kind === 'secret' ? c.clientSecret : ''))).toEqual(['new']);
    expect(sm.calls).toEqual(['AWSCURRENT', 'AWSCURRENT', 'AWSPENDING']);
    // nothing preferred: get serves AWSCURRENT from the cache, not the pending value just read
    expect(await credentials.get(SECRET)).toMatchObject({ clientSecret: 'old' });
    expect(sm.calls).toHaveLength(3);
  });

  it('keeps what alternatives read of AWSCURRENT for the max age (a rotation that finished)', async () => {
    const { sm, credentials } = setup({ AWSCURRENT: value('old') });
    const old = await credentials.get(SECRET);
    sm.stages.AWSCURRENT = value('new');
    expect((await credentials.alternatives(SECRET, old)).map((c) => (c.kind === 'secret' ? c.clientSecret : ''))).toEqual(['new']);
    expect(await credentials.get(SECRET)).toMatchObject({ clientSecret: 'new' });
    expect(sm.calls).toEqual(['AWSCURRENT', 'AWSCURRENT', 'AWSPENDING']);
  });

  it('serves preferred credentials until the max age, then AWSCURRENT again', async () => {
    const { clock, credentials } = setup({ AWSCURRENT: value('old'), AWSPENDING: value('new') });
    const [pending] = await credentials.alternatives(SECRET, await credentials.get(SECRET));
    credentials.prefer(SECRET, pending!);
    expect(await credentials.get(SECRET)).toMatchObject({ clientSecret: 'new' });
    clock.t += 300_000;
    expect(await credentials.get(SECRET)).toMatchObject({ clientSecret: 'old' });
  });

  it('keeps the last good value through an outage, and fails without one', async () => {
    const { clock, sm, credentials } = setup({ AWSCURRENT: value('one') });
    await credentials.get(SECRET);
    sm.stages.AWSCURRENT = unavailable();
    clock.t += 300_000;
    expect(await credentials.get(SECRET)).toMatchObject({ clientSecret: 'one' });
    const cold = setup({ AWSCURRENT: unavailable() }).credentials;
    await expect(cold.get(SECRET)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(cold.get(SECRET)).rejects.toThrow('(ECONNREFUSED)');
  });

  it('maps a missing or unreadable secret to a configuration error, and skips a missing AWSPENDING', async () => {
    await expect(setup({}).credentials.get(SECRET)).rejects.toMatchObject({ name: 'ConfigError', notFound: true });
    const denied = setup({ AWSCURRENT: Object.assign(new Error('denied'), { name: 'AccessDeniedException' }) }).credentials;
    await expect(denied.get(SECRET)).rejects.toBeInstanceOf(ConfigError);
    const { credentials } = setup({ AWSCURRENT: value('one') });
    expect(await credentials.alternatives(SECRET, await credentials.get(SECRET))).toEqual([]);
  });
});
