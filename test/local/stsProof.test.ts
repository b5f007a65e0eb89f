import { createHash } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { checkProof, requestBinding as vendorRequestBinding } from '../../functions/core/identityProof.js';
import { verifyPresignedSigV4, type LocalCredential, type SigV4Request } from '../../local/sigv4.js';
import { decodeProof, presignProof, presignProofUrl, requestBinding, type PresignProofOptions } from '../../local/stsProof.js';
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
function stsRequest(url: string, binding: { audience: string; scope?: string }, serverId = SERVER_ID): SigV4Request {
  const parsed = new URL(url);
  return {
    method: 'GET',
    url: `${parsed.pathname}${parsed.search}`,
    headers: { host: parsed.host, 'x-token-vendor-request': requestBinding(binding.audience, binding.scope), 'x-token-vendor-server-id': serverId, accept: 'application/json' },
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
