/**
 * How the verifier reads every answer STS may give (docs/identity-proof.md, "The STS call"). The
 * answers are scripted here to cover the ones the local STS stand-in does not produce (a lying or
 * misbehaving STS); test/integration/identity.test.ts runs the same verifier against the stand-in.
 */
import { describe, expect, it } from 'vitest';
import { StsIdentityVerifier } from '../../functions/adapters/stsIdentityVerifier.js';
import { IdentityProofError, ProofRefusedError, StsBadAnswerError, StsUnavailableError } from '../../functions/core/errors.js';

const NOW = Date.UTC(2026, 10, 24, 12, 0, 0);
const PROOF = `tvp1.${Buffer.from(
  'https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256' +
    '&X-Amz-Credential=ASIAEXAMPLEKEY000001%2F20261124%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date=20261124T120000Z&X-Amz-Expires=60' +
    `&X-Amz-SignedHeaders=host%3Bx-token-vendor-request%3Bx-token-vendor-server-id&X-Amz-Signature=${'b'.repeat(64)}`,
).toString('base64url')}`;
const REQUEST = { audience: 'https://orders.example.com', scope: 'read:orders' };

function identity(arn: string, userId: string, account = '111122223333'): string {
  return JSON.stringify({ GetCallerIdentityResponse: { GetCallerIdentityResult: { Account: account, Arn: arn, UserId: userId }, ResponseMetadata: { RequestId: 'r' } } });
}

function verifier(answer: () => Response | Promise<Response>, now = () => NOW) {
  const sent: Array<{ url: string; init: RequestInit | undefined }> = [];
  const fetch = (async (url: string | URL | Request, init?: RequestInit) => {
    sent.push({ url: String(url), init });
    return answer();
  }) as typeof globalThis.fetch;
  return { sent, v: new StsIdentityVerifier({ policy: { region: 'eu-west-1', serverId: 'token-vendor-prod' }, timeoutMs: 2000, fetch, now }) };
}

describe('StsIdentityVerifier', () => {
  it('proves a role session as its role, with the role\'s unique id, sending only what it chose', async () => {
    const { v, sent } = verifier(() => new Response(identity('arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc', 'AROAEXAMPLEROLEID0001:i-0abc')));
    await expect(v.verify(PROOF, REQUEST)).resolves.toMatchObject({ arn: 'arn:aws:iam::111122223333:role/checkout-service', type: 'role', uniqueId: 'AROAEXAMPLEROLEID0001' });
    expect(sent).toHaveLength(1);
    expect(sent[0]?.init).toMatchObject({ method: 'GET', redirect: 'manual' });
    expect(Object.keys(sent[0]?.init?.headers as Record<string, string>).sort()).toEqual(['accept', 'accept-encoding', 'x-token-vendor-request', 'x-token-vendor-server-id']);
  });

  it('proves an IAM user as itself, path included', async () => {
    const { v } = verifier(() => new Response(identity('arn:aws:iam::111122223333:user/ops/alice', 'AIDAEXAMPLEUSERID0001')));
    await expect(v.verify(PROOF, REQUEST)).resolves.toMatchObject({ arn: 'arn:aws:iam::111122223333:user/ops/alice', path: 'ops', uniqueId: 'AIDAEXAMPLEUSERID0001' });
  });

  it('makes no STS call for a proof refused on its face', async () => {
    const { v, sent } = verifier(() => new Response(identity('arn:aws:iam::111122223333:user/a', 'AIDAEXAMPLEUSERID0001')));
    await expect(v.verify('tvp1.not-a-url', REQUEST)).rejects.toBeInstanceOf(IdentityProofError);
    expect(sent).toHaveLength(0);
  });

  it.each([
    ['SignatureDoesNotMatch (JSON)', 403, JSON.stringify({ Error: { Code: 'SignatureDoesNotMatch', Message: 'm', Type: 'Sender' }, RequestId: 'r' })],
    ['InvalidClientTokenId (XML)', 403, '<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code></Error></ErrorResponse>'],
    ['ExpiredToken', 400, JSON.stringify({ Error: { Code: 'ExpiredToken' } })],
    ['an unreadable 401', 401, 'nope'],
  ])('answers 403 when STS refuses the proof: %s', async (_what, status, body) => {
    const { v } = verifier(() => new Response(body, { status }));
    await expect(v.verify(PROOF, REQUEST)).rejects.toBeInstanceOf(ProofRefusedError);
  });

  it.each([
    ['throttling (a 400)', () => new Response(JSON.stringify({ Error: { Code: 'Throttling' } }), { status: 400 })],
    ['a 500', () => new Response('', { status: 500 })],
    ['a 503', () => new Response('<Error><Code>ServiceUnavailable</Code></Error>', { status: 503 })],
    ['a redirect (not followed)', () => new Response('', { status: 302, headers: { location: 'https://attacker.example/' } })],
    ['a connection failure', () => Promise.reject(new TypeError('fetch failed'))],
    ['a timeout', () => Promise.reject(new DOMException('timed out', 'TimeoutError'))],
    ['an answer over 16 KiB', () => new Response('x'.repeat(17 * 1024))],
  ])('answers 503 with Retry-After when STS cannot answer: %s', async (_what, answer) => {
    const { v } = verifier(answer);
    const error = await v.verify(PROOF, REQUEST).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StsUnavailableError);
    expect((error as StsUnavailableError).retryAfterSeconds).toBeGreaterThan(0);
  });

  it.each([
    ['not JSON', 'OK'],
    ['no identity', JSON.stringify({ GetCallerIdentityResponse: {} })],
    ['an account that is not the ARN\'s', identity('arn:aws:sts::111122223333:assumed-role/app/s1', 'AROAEXAMPLEROLEID0001:s1', '999999999999')],
    ['a role session without a session in UserId', identity('arn:aws:sts::111122223333:assumed-role/app/s1', 'AROAEXAMPLEROLEID0001')],
    ['a user with a session in UserId', identity('arn:aws:iam::111122223333:user/a', 'AIDAEXAMPLEUSERID0001:x')],
    ['a malformed unique id', identity('arn:aws:iam::111122223333:user/a', 'alice')],
  ])('treats a 200 with %s as STS misbehaving (503), never as an identity', async (_what, body) => {
    const { v } = verifier(() => new Response(body));
    await expect(v.verify(PROOF, REQUEST)).rejects.toBeInstanceOf(StsBadAnswerError);
  });

  it.each([
    ['the account root', identity('arn:aws:iam::111122223333:root', '111122223333')],
    ['a federated user', identity('arn:aws:sts::111122223333:federated-user/bob', '111122223333:bob')],
  ])('refuses %s: only roles and users are granted anything', async (_what, body) => {
    const { v } = verifier(() => new Response(body));
    await expect(v.verify(PROOF, REQUEST)).rejects.toBeInstanceOf(IdentityProofError);
  });

  it('proves one proof for one request once while it is valid, and never keeps a failure', async () => {
    let clock = NOW;
    let fail = true;
    const { v, sent } = verifier(() => (fail ? new Response('', { status: 503 }) : new Response(identity('arn:aws:iam::111122223333:user/a', 'AIDAEXAMPLEUSERID0001'))), () => clock);
    await expect(v.verify(PROOF, REQUEST)).rejects.toBeInstanceOf(StsUnavailableError);
    fail = false;
    const copies = await Promise.all([v.verify(PROOF, REQUEST), v.verify(PROOF, REQUEST), v.verify(PROOF, REQUEST)]);
    expect(copies.map((c) => c.arn)).toEqual(Array(3).fill('arn:aws:iam::111122223333:user/a'));
    expect(sent).toHaveLength(2);
    // the same proof for another request is checked (and bound) anew
    await v.verify(PROOF, { ...REQUEST, scope: 'write:orders' });
    expect(sent).toHaveLength(3);
    // and a remembered proof is refused once its window closes
    clock = NOW + 60_001;
    await expect(v.verify(PROOF, REQUEST)).rejects.toBeInstanceOf(IdentityProofError);
    expect(sent).toHaveLength(3);
  });
});
