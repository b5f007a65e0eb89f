import { createHash } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { checkProof, requestBinding as vendorRequestBinding } from '../../functions/core/identityProof.js';
import { verifyPresignedSigV4, type LocalCredential, type SigV4Request } from '../../local/sigv4.js';
import { decodeProof, presignProof, presignProofUrl, requestBinding, withFreshProof, type PresignProofOptions } from '../../local/stsProof.js';
import { apiEvent, directEvent, registerProofSigner } from '../helpers/events.js';
import { botocorePresign } from './botocore.js';

const NOW = new Date('2025-11-24T03:07:00Z');
const REGION = 'eu-west-1';
const STS_ORIGIN = 'http://127.0.0.1:4020';
const SERVER_ID = 'token-vendor-test';
const ROLE: LocalCredential = {
  accessKeyId: 'AKIACHECKOUT00000001',
  secretAccessKey: 'checkout/secret+With=Chars',
  principalArn: 'arn:aws:iam::111122223333:role/checkout-service',
  sessionName: 'i-0abc',
};
const TEMPORARY: LocalCredential = { ...ROLE, accessKeyId: 'ASIACHECKOUT0000001', sessionToken: 'FwoGZXIvYXdzE/session+token==' };

function options(overrides: Partial<PresignProofOptions> = {}): PresignProofOptions {
  return { credential: ROLE, region: REGION, stsOrigin: STS_ORIGIN, serverId: SERVER_ID, audience: 'https://orders.example.com', scope: 'read:orders', now: NOW, ...overrides };
}

/** The GET the vendor sends to STS for this URL, with the header values it computes itself. */
function stsRequest(url: string, binding: { audience: string; scope?: string; organization?: string }, serverId = SERVER_ID): SigV4Request {
  const parsed = new URL(url);
  return {
    method: 'GET',
    url: `${parsed.pathname}${parsed.search}`,
    headers: {
      host: parsed.host,
      'x-token-vendor-request': requestBinding(binding.audience, binding.scope, binding.organization),
      'x-token-vendor-server-id': serverId,
      accept: 'application/json',
    },
    body: new Uint8Array(),
  };
}

function verify(req: SigV4Request, credentials: LocalCredential[] = [ROLE]) {
  return verifyPresignedSigV4(req, { lookup: (akid) => credentials.find((c) => c.accessKeyId === akid), region: REGION, service: 'sts', now: () => NOW });
}

describe('requestBinding', () => {
  it('hashes tvp1, the audience and the normalized scope (deduplicated, sorted, single spaces)', () => {
    const expected = createHash('sha256').update('tvp1\nhttps://orders.example.com\nread:orders write:orders').digest('hex');

    expect(requestBinding('https://orders.example.com', ' write:orders  read:orders write:orders')).toBe(expected);
    expect(requestBinding('https://orders.example.com', 'read:orders write:orders')).toBe(expected);
  });

  it('no scope and an empty scope bind the same, and differ from any scope', () => {
    const none = createHash('sha256').update('tvp1\nhttps://orders.example.com\n').digest('hex');

    expect(requestBinding('https://orders.example.com')).toBe(none);
    expect(requestBinding('https://orders.example.com', '')).toBe(none);
    expect(requestBinding('https://orders.example.com', 'read:orders')).not.toBe(none);
  });

  it("agrees with the vendor's own binding (functions/core/identityProof.ts)", () => {
    for (const [audience, scope] of [
      ['https://orders.example.com', undefined],
      ['https://orders.example.com', 'write:orders read:orders read:orders'],
      ['https://billing.example.com', 'read:billing'],
    ] as const) {
      expect(requestBinding(audience, scope)).toBe(vendorRequestBinding(audience, scope));
    }
  });

  it('appends \n<organization> when the request names one: a fixed vector, the same as the vendor\'s', () => {
    // Known answer from coreutils:
    //   printf 'tvp1\nhttps://orders.example.com\nread:orders write:orders\norg_W0pZ5hnWr4BCGg8a' | sha256sum
    const expected = '23ca7bc7ed70eac1a3331281c65e3593738deb16bf0b84b7fc18b9e2d60a7171';

    expect(requestBinding('https://orders.example.com', 'write:orders read:orders', 'org_W0pZ5hnWr4BCGg8a')).toBe(expected);
    expect(vendorRequestBinding('https://orders.example.com', 'write:orders read:orders', 'org_W0pZ5hnWr4BCGg8a')).toBe(expected);
    for (const [scope, organization] of [
      [undefined, 'acme-corp'],
      ['read:orders', 'org_W0pZ5hnWr4BCGg8a'],
      ['read:orders', undefined],
    ] as const) {
      expect(requestBinding('https://orders.example.com', scope, organization)).toBe(vendorRequestBinding('https://orders.example.com', scope, organization));
    }
    // Without an organization, exactly the binding of before; an organization, even one that
    // looks like a scope, is never read as part of the scope.
    expect(requestBinding('https://orders.example.com', 'read:orders', undefined)).toBe(requestBinding('https://orders.example.com', 'read:orders'));
    expect(requestBinding('https://orders.example.com', 'read:orders', 'acme')).not.toBe(requestBinding('https://orders.example.com', 'read:orders acme'));
  });
});

describe('presignProof: the wire format of docs/identity-proof.md', () => {
  it('is tvp1. + base64url (no padding) of a presigned GetCallerIdentity URL, parameters in the documented order', () => {
    const proof = presignProof(options());

    expect(proof).toMatch(/^tvp1\.[A-Za-z0-9_-]+$/);
    const url = new URL(decodeProof(proof));
    expect(url.origin).toBe(STS_ORIGIN);
    expect(url.pathname).toBe('/');
    expect([...url.searchParams.keys()]).toEqual([
      'Action',
      'Version',
      'X-Amz-Algorithm',
      'X-Amz-Credential',
      'X-Amz-Date',
      'X-Amz-Expires',
      'X-Amz-SignedHeaders',
      'X-Amz-Signature',
    ]);
    expect(Object.fromEntries(url.searchParams)).toMatchObject({
      Action: 'GetCallerIdentity',
      Version: '2011-06-15',
      'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
      'X-Amz-Credential': `${ROLE.accessKeyId}/20251124/${REGION}/sts/aws4_request`,
      'X-Amz-Date': '20251124T030700Z',
      'X-Amz-Expires': '60',
      'X-Amz-SignedHeaders': 'host;x-token-vendor-request;x-token-vendor-server-id',
    });
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('puts a session token last, signed', () => {
    const url = new URL(presignProofUrl(options({ credential: TEMPORARY })));

    expect([...url.searchParams.keys()].at(-1)).toBe('X-Amz-Security-Token');
    expect(url.searchParams.get('X-Amz-Security-Token')).toBe(TEMPORARY.sessionToken);
    expect(verify(stsRequest(url.href, { audience: 'https://orders.example.com', scope: 'read:orders' }), [TEMPORARY]).ok).toBe(true);
  });

  it('verifies only with the header values it was bound to', () => {
    const url = presignProofUrl(options());

    expect(verify(stsRequest(url, { audience: 'https://orders.example.com', scope: 'read:orders' })).ok).toBe(true);
    expect(verify(stsRequest(url, { audience: 'https://orders.example.com', scope: 'read:orders write:orders' }))).toMatchObject({ failure: 'signature_mismatch' });
    expect(verify(stsRequest(url, { audience: 'https://billing.example.com', scope: 'read:orders' }))).toMatchObject({ failure: 'signature_mismatch' });
    expect(verify(stsRequest(url, { audience: 'https://orders.example.com', scope: 'read:orders' }, 'token-vendor-prod'))).toMatchObject({ failure: 'signature_mismatch' });
  });

  it('binds the organization it is given: it verifies for that organization only', () => {
    const url = presignProofUrl(options({ organization: 'org_W0pZ5hnWr4BCGg8a' }));
    const orders = { audience: 'https://orders.example.com', scope: 'read:orders' };

    expect(verify(stsRequest(url, { ...orders, organization: 'org_W0pZ5hnWr4BCGg8a' })).ok).toBe(true);
    expect(verify(stsRequest(url, orders))).toMatchObject({ failure: 'signature_mismatch' });
    expect(verify(stsRequest(url, { ...orders, organization: 'globex' }))).toMatchObject({ failure: 'signature_mismatch' });
  });

  it('refuses an stsOrigin with a path or query, and a non-positive expiry', () => {
    expect(() => presignProof(options({ stsOrigin: 'http://127.0.0.1:4020/sts' }))).toThrow(/origin/);
    expect(() => presignProof(options({ stsOrigin: 'http://127.0.0.1:4020/?Action=AssumeRole' }))).toThrow(/origin/);
    expect(() => presignProof(options({ expiresSeconds: 0 }))).toThrow(/expiresSeconds/);
  });

  it("passes the vendor's own checks (functions/core/identityProof.ts checkProof) for the local STS", () => {
    const proof = presignProof(options());

    const checked = checkProof(proof, { audience: 'https://orders.example.com', scope: 'read:orders' }, { region: REGION, serverId: SERVER_ID, localStsOrigin: STS_ORIGIN }, NOW.getTime());

    expect(checked.headers['x-token-vendor-request']).toBe(requestBinding('https://orders.example.com', 'read:orders'));
    // what the vendor rebuilds and sends still verifies
    expect(verify({ method: 'GET', url: checked.url.slice(STS_ORIGIN.length), headers: { host: '127.0.0.1:4020', ...checked.headers }, body: new Uint8Array() }).ok).toBe(true);
  });
});

describe('presignProof agrees with the AWS SDKs', () => {
  const headers = { 'x-token-vendor-request': requestBinding('https://orders.example.com', 'read:orders'), 'x-token-vendor-server-id': SERVER_ID };

  it.each([
    ['long-term key', ROLE],
    ['temporary credentials', TEMPORARY],
  ])('@smithy/signature-v4 presign() computes the same signature (%s)', async (_case, credential) => {
    const signer = new SignatureV4({ service: 'sts', region: REGION, credentials: credential, sha256: Hash.bind(null, 'sha256') });
    const presigned = await signer.presign(
      new HttpRequest({
        method: 'GET',
        protocol: 'http:',
        hostname: '127.0.0.1',
        port: 4020,
        path: '/',
        query: { Action: 'GetCallerIdentity', Version: '2011-06-15' },
        headers: { host: '127.0.0.1:4020', ...headers },
      }),
      { signingDate: NOW, expiresIn: 60 },
    );

    const ours = new URL(presignProofUrl(options({ credential })));

    expect(presigned.query?.['X-Amz-SignedHeaders']).toBe('host;x-token-vendor-request;x-token-vendor-server-id');
    expect(ours.searchParams.get('X-Amz-Signature')).toBe(presigned.query?.['X-Amz-Signature']);
  });

  it.each([
    ['long-term key', ROLE],
    ['temporary credentials', TEMPORARY],
  ])('botocore SigV4QueryAuth computes the same signature (%s)', (_case, credential) => {
    const theirs = new URL(
      botocorePresign({
        url: `${STS_ORIGIN}/?Action=GetCallerIdentity&Version=2011-06-15`,
        headers,
        credential,
        region: REGION,
        service: 'sts',
        expires: 60,
        amzDate: '20251124T030700Z',
      }),
    );

    const ours = new URL(presignProofUrl(options({ credential })));

    expect(theirs.searchParams.get('X-Amz-SignedHeaders')).toBe('host;x-token-vendor-request;x-token-vendor-server-id');
    expect(ours.searchParams.get('X-Amz-Signature')).toBe(theirs.searchParams.get('X-Amz-Signature'));
    expect(Object.fromEntries(ours.searchParams)).toEqual(Object.fromEntries(theirs.searchParams));
  });
});

describe('withFreshProof: the organization of a sample event reaches the signer', () => {
  type Signed = [string | undefined, string, string | undefined, string | undefined];
  const recorder = () => {
    const calls: Signed[] = [];
    const sign = (...args: Signed) => {
      calls.push(args);
      return 'tvp1.proof';
    };
    return { calls, sign };
  };

  it('a direct invocation: its organization, or none', () => {
    const { calls, sign } = recorder();

    const signed = withFreshProof({ audience: 'https://orders.example.com', scope: 'read:orders', organization: 'acme' }, sign, 'arn:aws:sts::111122223333:assumed-role/reporting-daily/job');
    withFreshProof({ audience: 'https://orders.example.com' }, sign, 'arn:aws:sts::111122223333:assumed-role/reporting-daily/job');

    expect(signed).toMatchObject({ organization: 'acme', proof: 'tvp1.proof' });
    expect(calls.map((call) => call.slice(1))).toEqual([
      ['https://orders.example.com', 'read:orders', 'acme'],
      ['https://orders.example.com', undefined, undefined],
    ]);
  });

  it("an API Gateway event: its body's organization", () => {
    const { calls, sign } = recorder();
    const event = {
      httpMethod: 'POST',
      headers: {},
      body: JSON.stringify({ audience: 'https://orders.example.com', organization: 'org_W0pZ5hnWr4BCGg8a' }),
      requestContext: { identity: { userArn: 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc' } },
    };

    withFreshProof(event, sign);

    expect(calls).toEqual([['arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc', 'https://orders.example.com', undefined, 'org_W0pZ5hnWr4BCGg8a']]);
  });
});

describe('test/helpers/events.ts: the default proofs bind the organization', () => {
  const CALLER = 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc';
  const orders = { audience: 'https://orders.example.com', scope: 'read:orders' };

  /** The events' signer is the one registered last; each test registers its own and removes it. */
  function withSigner<T>(run: () => T): T {
    const unregister = registerProofSigner({ stsOrigin: STS_ORIGIN, region: REGION, serverId: SERVER_ID, credentials: { [CALLER]: ROLE } });
    try {
      return run();
    } finally {
      unregister();
    }
  }
  const verifyNow = (url: string, binding: { audience: string; scope?: string; organization?: string }) =>
    verifyPresignedSigV4(stsRequest(url, binding), { lookup: (akid) => (akid === ROLE.accessKeyId ? ROLE : undefined), region: REGION, service: 'sts' });

  it("apiEvent: the body's organization", () => {
    const event = withSigner(() => apiEvent({ userArn: CALLER, body: JSON.stringify({ ...orders, organization: 'acme' }) }));
    const url = decodeProof(event.headers['X-Token-Vendor-Proof'] ?? '');

    expect(verifyNow(url, { ...orders, organization: 'acme' }).ok).toBe(true);
    expect(verifyNow(url, orders)).toMatchObject({ failure: 'signature_mismatch' });
  });

  it("directEvent: sends the organization and binds it; without one, binds none", () => {
    const [withOrganization, without] = withSigner(() => [directEvent({ ...orders, organization: 'acme', as: CALLER }), directEvent({ ...orders, as: CALLER })]);

    expect(withOrganization).toMatchObject({ ...orders, organization: 'acme' });
    expect(verifyNow(decodeProof(withOrganization?.proof ?? ''), { ...orders, organization: 'acme' }).ok).toBe(true);
    expect(verifyNow(decodeProof(withOrganization?.proof ?? ''), orders)).toMatchObject({ failure: 'signature_mismatch' });
    expect(without).not.toHaveProperty('organization');
    expect(verifyNow(decodeProof(without?.proof ?? ''), orders).ok).toBe(true);
  });
});
