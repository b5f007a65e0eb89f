import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LocalCredential } from '../../local/sigv4.js';
import { defaultUniqueId, startLocalSts, stsCallerIdentity, type LocalSts } from '../../local/sts.js';
import { presignProofUrl, requestBinding, type PresignProofOptions } from '../../local/stsProof.js';
import { botocorePresign } from './botocore.js';

const REGION = 'eu-west-1';
const SERVER_ID = 'token-vendor-test';
const SIGNED_AT = new Date('2025-11-24T03:07:00Z');
const ROLE: LocalCredential = {
  accessKeyId: 'AKIACHECKOUT00000001',
  secretAccessKey: 'checkout-secret',
  principalArn: 'arn:aws:iam::111122223333:role/teams/checkout-service',
  sessionName: 'i-0abc',
};
const OTHER_SESSION: LocalCredential = { ...ROLE, accessKeyId: 'AKIACHECKOUT00000002', sessionName: 'i-0def' };
const PINNED: LocalCredential = {
  accessKeyId: 'AKIAREPORTING0000001',
  secretAccessKey: 'reporting-secret',
  principalArn: 'arn:aws:iam::111122223333:role/reporting-daily',
  sessionName: 'job-1',
  uniqueId: 'AROAPINNEDEXAMPLE0001',
};
const USER: LocalCredential = { accessKeyId: 'AKIAALICE00000000001', secretAccessKey: 'alice-secret', principalArn: 'arn:aws:iam::111122223333:user/ops/alice' };
const TEMPORARY: LocalCredential = { ...ROLE, accessKeyId: 'ASIACHECKOUT00000001', sessionName: 'i-0tmp', sessionToken: 'FwoGZXIvYXdzE/session+token==' };

let sts: LocalSts;
let clock = SIGNED_AT;

beforeAll(async () => {
  sts = await startLocalSts({ credentials: [ROLE, OTHER_SESSION, PINNED, USER, TEMPORARY], region: REGION, now: () => clock });
});
afterAll(async () => {
  await sts?.close();
});
beforeEach(() => {
  clock = SIGNED_AT;
  sts.setFault(null);
  sts.resetCounters();
});

const AUDIENCE = 'https://orders.example.com';

function proofUrl(overrides: Partial<PresignProofOptions> = {}): string {
  return presignProofUrl({ credential: ROLE, region: REGION, stsOrigin: sts.origin, serverId: SERVER_ID, audience: AUDIENCE, scope: 'read:orders', now: SIGNED_AT, ...overrides });
}

/** What the vendor sends: the URL, its own header values, JSON unless told otherwise. */
async function call(url: string, opts: { scope?: string; serverId?: string; accept?: string | null; method?: string; signal?: AbortSignal } = {}) {
  const headers: Record<string, string> = {
    'x-token-vendor-server-id': opts.serverId ?? SERVER_ID,
    'x-token-vendor-request': requestBinding(AUDIENCE, opts.scope ?? 'read:orders'),
  };
  if (opts.accept !== null) headers.accept = opts.accept ?? 'application/json';
  const res = await fetch(url, { method: opts.method ?? 'GET', headers, ...(opts.signal ? { signal: opts.signal } : {}) });
  const text = await res.text();
  return { status: res.status, contentType: res.headers.get('content-type'), text, json: () => JSON.parse(text) as Record<string, unknown> };
}

describe('GetCallerIdentity answers', () => {
  it('a role session: the assumed-role ARN (no path), AROA…:SESSION, the account; JSON when asked', async () => {
    const res = await call(proofUrl());

    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^application\/json/);
    const doc = res.json() as { GetCallerIdentityResponse: { GetCallerIdentityResult: Record<string, string>; ResponseMetadata: { RequestId: string } } };
    expect(doc.GetCallerIdentityResponse.GetCallerIdentityResult).toEqual({
      Account: '111122223333',
      Arn: 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc',
      UserId: `${defaultUniqueId('AROA', ROLE.principalArn)}:i-0abc`,
    });
    expect(doc.GetCallerIdentityResponse.ResponseMetadata.RequestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a pinned unique id is reported as configured; the default one is 21 characters and stable', async () => {
    const res = await call(proofUrl({ credential: PINNED }));

    expect(res.json()).toMatchObject({ GetCallerIdentityResponse: { GetCallerIdentityResult: { UserId: 'AROAPINNEDEXAMPLE0001:job-1' } } });
    expect(defaultUniqueId('AROA', ROLE.principalArn)).toMatch(/^AROA[A-Z2-7]{17}$/);
    expect(defaultUniqueId('AROA', ROLE.principalArn)).toBe(defaultUniqueId('AROA', ROLE.principalArn));
    expect(defaultUniqueId('AROA', ROLE.principalArn)).not.toBe(defaultUniqueId('AROA', PINNED.principalArn));
  });

  it('an IAM user: its ARN with its path, and AIDA…; XML without Accept: application/json', async () => {
    const res = await call(proofUrl({ credential: USER }), { accept: null });

    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^text\/xml/);
    expect(res.text).toContain('<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">');
    expect(res.text).toContain('<Arn>arn:aws:iam::111122223333:user/ops/alice</Arn>');
    expect(res.text).toContain(`<UserId>${defaultUniqueId('AIDA', USER.principalArn)}</UserId>`);
    expect(res.text).toContain('<Account>111122223333</Account>');
  });

  it('temporary credentials with their session token', async () => {
    const res = await call(proofUrl({ credential: TEMPORARY }));

    expect(res.json()).toMatchObject({ GetCallerIdentityResponse: { GetCallerIdentityResult: { Arn: 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0tmp' } } });
  });

  it('a URL presigned by botocore, as a Python caller makes it', async () => {
    const url = botocorePresign({
      url: `${sts.origin}/?Action=GetCallerIdentity&Version=2011-06-15`,
      headers: { 'x-token-vendor-request': requestBinding(AUDIENCE, 'read:orders'), 'x-token-vendor-server-id': SERVER_ID },
      credential: USER,
      region: REGION,
      service: 'sts',
      expires: 60,
      amzDate: '20251124T030700Z',
    });

    const res = await call(url);

    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ GetCallerIdentityResponse: { GetCallerIdentityResult: { Arn: USER.principalArn } } });
  });
});

describe('the 15-minute window STS applies to a presigned GetCallerIdentity', () => {
  it('accepts a proof with X-Amz-Expires=60 ten minutes later, and refuses it after 15 minutes', async () => {
    const url = proofUrl({ expiresSeconds: 60 });

    clock = new Date(SIGNED_AT.getTime() + 10 * 60_000);
    const late = await call(url);
    clock = new Date(SIGNED_AT.getTime() + 15 * 60_000 + 1000);
    const expired = await call(url);

    expect(late.status).toBe(200);
    expect(expired.status).toBe(403);
    expect(expired.json()).toMatchObject({ Error: { Code: 'SignatureDoesNotMatch', Type: 'Sender' } });
    expect(String((expired.json().Error as { Message: string }).Message)).toMatch(/^Signature expired/);
  });
});

describe('setNow', () => {
  it('moves the window onto a test clock, and back', async () => {
    const url = proofUrl();
    const later = new Date(SIGNED_AT.getTime() + 20 * 60_000);

    sts.setNow(() => later);
    const onTestClock = await call(url);
    sts.setNow(null);
    const back = await call(url);

    expect(onTestClock.status).toBe(403);
    expect(back.status).toBe(200);
  });
});

describe('refusals', () => {
  it('another server id or another request binding -> 403 SignatureDoesNotMatch, with the JSON error shape', async () => {
    const url = proofUrl();

    const otherServer = await call(url, { serverId: 'token-vendor-prod' });
    const otherScope = await call(url, { scope: 'read:orders write:orders' });

    for (const res of [otherServer, otherScope]) {
      expect(res.status).toBe(403);
      const doc = res.json();
      expect(doc).toEqual({ Error: { Code: 'SignatureDoesNotMatch', Message: expect.any(String), Type: 'Sender' }, RequestId: expect.any(String) });
    }
  });

  it('an unknown key or a wrong session token -> 403 InvalidClientTokenId (XML without Accept)', async () => {
    const unknown = await call(proofUrl({ credential: { accessKeyId: 'AKIAUNKNOWN000000001', secretAccessKey: 'x' } }));
    const wrongToken = await call(proofUrl({ credential: { ...TEMPORARY, sessionToken: 'forged' } }), { accept: null });

    expect(unknown.status).toBe(403);
    expect(unknown.json()).toMatchObject({ Error: { Code: 'InvalidClientTokenId' } });
    expect(wrongToken.status).toBe(403);
    expect(wrongToken.text).toContain('<Code>InvalidClientTokenId</Code>');
    expect(wrongToken.text).not.toContain(TEMPORARY.sessionToken);
  });

  it('signed for another region -> 403', async () => {
    const res = await call(proofUrl({ region: 'us-east-1' }));

    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ Error: { Code: 'SignatureDoesNotMatch' } });
  });

  it('anything but GET / with Action=GetCallerIdentity&Version=2011-06-15 is refused, and counted', async () => {
    const url = new URL(proofUrl());
    const assumeRole = new URL(url);
    assumeRole.searchParams.set('Action', 'AssumeRole');
    const noVersion = new URL(url);
    noVersion.searchParams.delete('Version');
    const noAction = new URL(url);
    noAction.searchParams.delete('Action');
    const otherPath = new URL(url);
    otherPath.pathname = '/admin';

    const answers = [await call(assumeRole.href), await call(noVersion.href), await call(noAction.href), await call(otherPath.href), await call(url.href, { method: 'POST' })];

    expect(answers.map((a) => [a.status, (a.json().Error as { Code: string }).Code])).toEqual([
      [400, 'InvalidAction'],
      [400, 'InvalidAction'],
      [400, 'MissingAction'],
      [404, 'InvalidAction'],
      [405, 'InvalidAction'],
    ]);
    expect(sts.calls()).toBe(5);
    expect(sts.callsBy(ROLE.principalArn)).toBe(0);
  });

  it('an unsigned request -> 403 MissingAuthenticationToken', async () => {
    const res = await call(`${sts.origin}/?Action=GetCallerIdentity&Version=2011-06-15`);

    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ Error: { Code: 'MissingAuthenticationToken' } });
  });
});

describe('counters', () => {
  it('calls() counts every request; callsBy() counts answers by session, user or role ARN', async () => {
    await call(proofUrl());
    await call(proofUrl({ credential: OTHER_SESSION }));
    await call(proofUrl({ credential: USER }));
    await call(proofUrl(), { serverId: 'another-deployment' });

    expect(sts.calls()).toBe(4);
    expect(sts.callsBy('arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc')).toBe(1);
    expect(sts.callsBy('arn:aws:sts::111122223333:assumed-role/checkout-service/i-0def')).toBe(1);
    expect(sts.callsBy(ROLE.principalArn)).toBe(2);
    expect(sts.callsBy(USER.principalArn)).toBe(1);
    expect(sts.credentialFor('arn:aws:sts::111122223333:assumed-role/checkout-service/i-0def')?.accessKeyId).toBe(OTHER_SESSION.accessKeyId);
    expect(sts.credentialFor('arn:aws:sts::111122223333:assumed-role/checkout-service/i-0zzz')).toBeUndefined();

    sts.resetCounters();
    expect([sts.calls(), sts.callsBy(ROLE.principalArn)]).toEqual([0, 0]);
  });
});

describe('faults', () => {
  it("'outage' -> 503 ServiceUnavailable, 'throttle' -> 400 Throttling; both counted, neither answers an identity", async () => {
    sts.setFault('outage');
    const outage = await call(proofUrl());
    sts.setFault('throttle');
    const throttled = await call(proofUrl());
    sts.setFault(null);
    const normal = await call(proofUrl());

    expect([outage.status, (outage.json().Error as { Code: string; Type: string }).Code, (outage.json().Error as { Type: string }).Type]).toEqual([503, 'ServiceUnavailable', 'Receiver']);
    expect([throttled.status, (throttled.json().Error as { Code: string }).Code]).toEqual([400, 'Throttling']);
    expect(normal.status).toBe(200);
    expect(sts.calls()).toBe(3);
    expect(sts.callsBy(ROLE.principalArn)).toBe(1);
  });

  it("'hang' never answers (the caller gives up); close() ends hung requests", async () => {
    const own = await startLocalSts({ credentials: [ROLE], region: REGION, now: () => SIGNED_AT });
    own.setFault('hang');
    const url = presignProofUrl({ credential: ROLE, region: REGION, stsOrigin: own.origin, serverId: SERVER_ID, audience: AUDIENCE, scope: 'read:orders', now: SIGNED_AT });

    const abandoned = call(url, { signal: AbortSignal.timeout(200) });
    await expect(abandoned).rejects.toThrow();
    const hung = call(url).then(
      () => 'answered',
      () => 'connection closed',
    );
    while (own.calls() < 2) await new Promise((r) => setTimeout(r, 10));
    await own.close();

    expect(await hung).toBe('connection closed');
    expect(own.calls()).toBe(2);
  });
});

describe('configuration', () => {
  it('refuses a principal that is neither a role nor a user, a key listed twice, a bad unique id', async () => {
    await expect(startLocalSts({ credentials: [{ ...ROLE, principalArn: 'arn:aws:iam::111122223333:group/ops' }], region: REGION })).rejects.toThrow(/neither an IAM role/);
    await expect(startLocalSts({ credentials: [ROLE, ROLE], region: REGION })).rejects.toThrow(/listed twice/);
    expect(() => stsCallerIdentity({ ...ROLE, uniqueId: 'AIDAUSERIDFORAROLE0001' })).toThrow(/must start with AROA/);
  });
});
