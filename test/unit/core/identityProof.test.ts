import { describe, expect, it } from 'vitest';
import { IdentityProofError } from '../../../functions/core/errors.js';
import { MAX_PROOF_LENGTH, checkProof, partitionOf, requestBinding, type ProofPolicy } from '../../../functions/core/identityProof.js';

const NOW = Date.UTC(2026, 10, 24, 12, 0, 0);
const AMZ_NOW = '20261124T120000Z';
const POLICY: ProofPolicy = { region: 'eu-west-1', serverId: 'token-vendor-prod' };
const REQUEST = { audience: 'https://orders.example.com', scope: 'read:orders' };

/** A proof URL as a presigner writes it; `edit` changes one query parameter (undefined: drop it). */
function proofUrl(edit: Record<string, string | undefined> = {}, host = 'sts.eu-west-1.amazonaws.com', scheme = 'https'): string {
  const params: Record<string, string | undefined> = {
    Action: 'GetCallerIdentity',
    Version: '2011-06-15',
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
    'X-Amz-Credential': `ASIAEXAMPLEKEY000001/20261124/${host === 'sts.amazonaws.com' ? 'us-east-1' : host.split('.')[1]}/sts/aws4_request`,
    'X-Amz-Date': AMZ_NOW,
    'X-Amz-Expires': '60',
    'X-Amz-SignedHeaders': 'host;x-token-vendor-request;x-token-vendor-server-id',
    'X-Amz-Security-Token': 'IQoJb3JpZ2luX2VjE+/session==',
    'X-Amz-Signature': 'a'.repeat(64),
    ...edit,
  };
  const query = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined));
  return `${scheme}://${host}/?${query.toString()}`;
}
const encode = (url: string) => `tvp1.${Buffer.from(url, 'utf8').toString('base64url')}`;
const check = (proof: unknown, now = NOW, policy = POLICY) => checkProof(proof, REQUEST, policy, now);
const refusal = (proof: unknown, now = NOW, policy = POLICY): string => {
  try {
    check(proof, now, policy);
  } catch (error) {
    expect(error).toBeInstanceOf(IdentityProofError);
    return (error as Error).message;
  }
  throw new Error('the proof was accepted');
};

describe('checkProof', () => {
  it('accepts a well-formed proof and rebuilds the request from checked parts, with the vendor\'s own header values', () => {
    const checked = check(encode(proofUrl()));
    const url = new URL(checked.url);
    expect(url.origin).toBe('https://sts.eu-west-1.amazonaws.com');
    expect(url.pathname).toBe('/');
    expect([...url.searchParams.keys()]).toEqual(['Action', 'Version', 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Security-Token']);
    expect(url.searchParams.get('X-Amz-Security-Token')).toBe('IQoJb3JpZ2luX2VjE+/session==');
    expect(checked.headers).toEqual({
      'x-token-vendor-server-id': 'token-vendor-prod',
      'x-token-vendor-request': requestBinding(REQUEST.audience, REQUEST.scope),
      accept: 'application/json',
    });
    expect(checked.expiresAt).toBe(NOW + 60_000);
  });

  it('accepts the global endpoint (us-east-1) and a long-term key without a session token', () => {
    expect(check(encode(proofUrl({ 'X-Amz-Security-Token': undefined }, 'sts.amazonaws.com'))).url).toMatch(/^https:\/\/sts\.amazonaws\.com\/\?/);
  });

  it.each([
    ['no proof', undefined, 'No identity proof'],
    ['an empty proof', '', 'No identity proof'],
    ['a number', 42, 'No identity proof'],
    ['another prefix', `k8s-aws-v1.${Buffer.from(proofUrl()).toString('base64url')}`, 'must start with'],
    ['not base64url', 'tvp1.a+b/c=', 'not base64url'],
    ['not a URL', encode('sts.amazonaws.com/?Action=GetCallerIdentity'), 'does not hold a URL'],
    ['an oversized proof', `tvp1.${'A'.repeat(MAX_PROOF_LENGTH)}`, 'longer than'],
  ])('refuses %s', (_what, proof, message) => {
    expect(refusal(proof)).toContain(message);
  });

  it.each([
    ['another host', proofUrl({}, 'sts.eu-west-1.attacker.example'), "STS in this vendor's region"],
    ['an STS-looking host under another domain', proofUrl({}, 'sts.eu-west-1.amazonaws.com.attacker.example'), "STS in this vendor's region"],
    ['another service', proofUrl({}, 'iam.amazonaws.com'), "STS in this vendor's region"],
    ['another region', proofUrl({}, 'sts.us-west-2.amazonaws.com'), "STS in this vendor's region"],
    ['a region that does not exist (an unresolvable host: a 503 for the asking)', proofUrl({}, 'sts.zz-fake-1.amazonaws.com'), "STS in this vendor's region"],
    ['another partition', proofUrl({}, 'sts.cn-north-1.amazonaws.com.cn'), "STS in this vendor's region"],
    ['a trailing dot', proofUrl({}, 'sts.eu-west-1.amazonaws.com.'), "STS in this vendor's region"],
    ['plain http', proofUrl({}, 'sts.eu-west-1.amazonaws.com', 'http'), 'https URL'],
    ['a port', proofUrl({}, 'sts.eu-west-1.amazonaws.com:8443'), 'default port'],
    ['user info', proofUrl({}, 'user:pw@sts.eu-west-1.amazonaws.com'), 'credentials'],
    ['another path', proofUrl().replace('.com/?', '.com/other?'), 'path "/"'],
    ['a fragment', `${proofUrl()}#x`, 'fragment'],
  ])('refuses a URL with %s, before any STS call', (_what, url, message) => {
    expect(refusal(encode(url))).toContain(message);
  });

  it.each([
    ['another action', { Action: 'AssumeRole' }, 'sts:GetCallerIdentity'],
    ['no action', { Action: undefined }, 'sts:GetCallerIdentity'],
    ['another version', { Version: '2010-01-01' }, '2011-06-15'],
    ['another algorithm', { 'X-Amz-Algorithm': 'AWS4-ECDSA-P256-SHA256' }, 'AWS4-HMAC-SHA256'],
    ['unsigned binding headers', { 'X-Amz-SignedHeaders': 'host' }, 'sign exactly the headers'],
    ['no server id signed', { 'X-Amz-SignedHeaders': 'host;x-token-vendor-request' }, 'sign exactly the headers'],
    ['an extra signed header', { 'X-Amz-SignedHeaders': 'host;x-amz-foo;x-token-vendor-request;x-token-vendor-server-id' }, 'sign exactly the headers'],
    ['an extra query key', { RoleArn: 'arn:aws:iam::1:role/x' }, 'not allowed'],
    ['a lower-cased key (another parameter to STS)', { 'x-amz-date': AMZ_NOW }, 'not allowed'],
    ['a malformed signature', { 'X-Amz-Signature': 'zz' }, 'X-Amz-Signature'],
    ['a credential for another service', { 'X-Amz-Credential': 'ASIAEXAMPLEKEY000001/20261124/eu-west-1/iam/aws4_request' }, 'scoped to sts in eu-west-1'],
    ['a credential for another region', { 'X-Amz-Credential': 'ASIAEXAMPLEKEY000001/20261124/us-west-2/sts/aws4_request' }, 'scoped to sts in eu-west-1'],
    ['a credential of another day', { 'X-Amz-Credential': 'ASIAEXAMPLEKEY000001/20261123/eu-west-1/sts/aws4_request' }, 'X-Amz-Credential'],
    ['a malformed date', { 'X-Amz-Date': '2026-11-24T12:00:00Z' }, 'X-Amz-Date'],
    ['an impossible date', { 'X-Amz-Date': '20260231T120000Z', 'X-Amz-Credential': 'ASIAEXAMPLEKEY000001/20260231/eu-west-1/sts/aws4_request' }, 'X-Amz-Date'],
    ['no expiry', { 'X-Amz-Expires': undefined }, 'X-Amz-Expires'],
    ['an expiry over 15 minutes', { 'X-Amz-Expires': '901' }, 'X-Amz-Expires'],
    ['a zero expiry', { 'X-Amz-Expires': '0' }, 'X-Amz-Expires'],
  ])('refuses a proof with %s, before any STS call', (_what, edit, message) => {
    expect(refusal(encode(proofUrl(edit)))).toContain(message);
  });

  it('refuses a repeated query key', () => {
    expect(refusal(encode(`${proofUrl()}&Action=GetCallerIdentity`))).toContain('repeats');
  });

  it('enforces the window itself: X-Amz-Expires, at most 300 s, and at most 60 s of clock skew ahead', () => {
    const proof = encode(proofUrl());
    expect(() => check(proof, NOW + 60_000)).not.toThrow();
    expect(refusal(proof, NOW + 60_001)).toContain('expired');
    // STS would take it for 15 minutes; the vendor does not.
    const long = encode(proofUrl({ 'X-Amz-Expires': '900' }));
    expect(() => check(long, NOW + 300_000)).not.toThrow();
    expect(refusal(long, NOW + 300_001)).toContain('expired');
    expect(() => check(proof, NOW - 60_000)).not.toThrow();
    expect(refusal(proof, NOW - 60_001)).toContain('future');
  });

  it('accepts only the local STS origin when one is configured, scoped to the local region', () => {
    const local: ProofPolicy = { ...POLICY, localStsOrigin: 'http://127.0.0.1:4566' };
    const url = proofUrl().replace('https://sts.eu-west-1.amazonaws.com', 'http://127.0.0.1:4566');
    expect(check(encode(url), NOW, local).url).toMatch(/^http:\/\/127\.0\.0\.1:4566\/\?/);
    expect(refusal(encode(proofUrl()), NOW, local)).toContain('local STS');
    expect(refusal(encode(url.replace('4566', '4567')), NOW, local)).toContain('local STS');
  });

  it('takes the regional host of the aws-cn and aws-us-gov partitions, and the global endpoint only in aws', () => {
    const cn = encode(proofUrl({}, 'sts.cn-north-1.amazonaws.com.cn'));
    expect(() => check(cn, NOW, { ...POLICY, region: 'cn-north-1' })).not.toThrow();
    const gov = encode(proofUrl({}, 'sts.us-gov-west-1.amazonaws.com'));
    expect(() => check(gov, NOW, { ...POLICY, region: 'us-gov-west-1' })).not.toThrow();
    expect(refusal(gov)).toContain("STS in this vendor's region");
    expect(refusal(encode(proofUrl({}, 'sts.amazonaws.com')), NOW, { ...POLICY, region: 'us-gov-west-1' })).toContain("STS in this vendor's region");
    expect(refusal(encode(proofUrl({}, 'sts.amazonaws.com')), NOW, { ...POLICY, region: 'cn-north-1' })).toContain("STS in this vendor's region");
  });

  it('never stretches a proof past 300 s from its signing, however its date and expiry are chosen', () => {
    // dated as far ahead as allowed, with the longest expiry: usable from 60 s before to 300 s after
    const ahead = encode(proofUrl({ 'X-Amz-Expires': '900' }));
    expect(() => check(ahead, NOW - 60_000)).not.toThrow();
    expect(refusal(ahead, NOW + 300_001)).toContain('expired');
  });
});

describe('requestBinding', () => {
  it('is the SHA-256 of tvp1, audience and the normalized scope, so scope order and repeats do not matter', () => {
    expect(requestBinding('https://a', 'b a a')).toBe(requestBinding('https://a', ' a  b'));
    expect(requestBinding('https://a', undefined)).toBe(requestBinding('https://a', ''));
    expect(requestBinding('https://a', 'a')).not.toBe(requestBinding('https://a', 'a b'));
    expect(requestBinding('https://a', 'a')).not.toBe(requestBinding('https://b', 'a'));
    // a fixed vector, so other implementations (the client, the Python snippet) can check themselves
    expect(requestBinding('https://orders.example.com', 'write:orders read:orders')).toBe('5417c27802fd6f710bda4b546ba6f7ad3d715ec96a0c65ab502d98f9cc0775cd');
  });

  it('maps regions to partitions', () => {
    expect([partitionOf('eu-west-1'), partitionOf('cn-north-1'), partitionOf('us-gov-west-1')]).toEqual(['aws', 'aws-cn', 'aws-us-gov']);
  });
});
