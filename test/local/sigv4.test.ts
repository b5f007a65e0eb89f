import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { verifyPresignedSigV4, verifySigV4, type LocalCredential, type SigV4Request } from '../../local/sigv4.js';
import { botocorePresign } from './botocore.js';

const REGION = 'eu-west-1';
const NOW = new Date('2025-11-24T03:07:00Z');
const HOST = '127.0.0.1:4010';
const ROLE: LocalCredential = {
  accessKeyId: 'AKIAORDERSAPI0000001',
  secretAccessKey: 'orders-secret/With+Slash',
  principalArn: 'arn:aws:iam::123456789012:role/teams/orders/orders-api',
  sessionName: 'orders-session',
};

interface SignInput {
  method?: string;
  /** the path as sent on the wire (already percent-encoded) */
  path: string;
  /** decoded query, as the signer takes it */
  query?: Record<string, string | string[]>;
  /** the query as sent on the wire; defaults to an encoding of `query` */
  rawQuery?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  credential?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  region?: string;
  service?: string;
  signingDate?: Date;
  applyChecksum?: boolean;
}

/** Sign as the client does (SignatureV4, execute-api) and return the request as a server sees it. */
async function signedRequest(input: SignInput): Promise<SigV4Request> {
  const body = input.body ?? '';
  const signer = new SignatureV4({
    service: input.service ?? 'execute-api',
    region: input.region ?? REGION,
    credentials: input.credential ?? ROLE,
    sha256: Hash.bind(null, 'sha256'),
    applyChecksum: input.applyChecksum ?? false,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: input.method ?? 'POST',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 4010,
      path: input.path,
      query: input.query ?? {},
      headers: { host: HOST, 'content-type': 'application/json', ...input.headers },
      body,
    }),
    { signingDate: input.signingDate ?? NOW },
  );
  const rawQuery = input.rawQuery ?? encodeQuery(input.query ?? {});
  return {
    method: input.method ?? 'POST',
    url: rawQuery === '' ? input.path : `${input.path}?${rawQuery}`,
    headers: { ...signed.headers },
    body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
  };
}

function encodeQuery(query: Record<string, string | string[]>): string {
  return Object.entries(query)
    .flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => `${encodeURIComponent(k)}=${encodeURIComponent(x)}`))
    .join('&');
}

function verify(req: SigV4Request, overrides: { now?: Date; region?: string; service?: string; credentials?: LocalCredential[] } = {}) {
  const credentials = overrides.credentials ?? [ROLE];
  return verifySigV4(req, {
    lookup: (akid) => credentials.find((c) => c.accessKeyId === akid),
    region: overrides.region ?? REGION,
    ...(overrides.service === undefined ? {} : { service: overrides.service }),
    now: () => overrides.now ?? NOW,
  });
}

const TOKEN_BODY = JSON.stringify({ audience: 'https://orders.example.com', scope: 'orders:read' });

describe('verifySigV4: requests signed like the client signs them', () => {
  it('accepts a signed POST and returns the credential', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });

    const result = await verify(req);

    expect(result).toEqual({ ok: true, credential: ROLE });
  });

  it('accepts a request that also signs x-amz-content-sha256', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY, applyChecksum: true });
    expect(req.headers['x-amz-content-sha256']).toBeDefined();

    const result = await verify(req);

    expect(result.ok).toBe(true);
  });

  it('accepts header names in any case and extra unsigned headers', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY, headers: { 'X-Custom': '  a   b ' } });
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k.toUpperCase(), v]));

    const result = await verify({ ...req, headers: { ...headers, 'user-agent': 'test/1.0', connection: 'keep-alive' } });

    expect(result.ok).toBe(true);
  });

  it('verifies query strings: repeated keys, spaces, reserved characters, any wire order', async () => {
    const query = { b: ['2', '1'], a: 'x y', 'c~': "it's (ok)*", empty: '' };
    const req = await signedRequest({ method: 'GET', path: '/local/things', query, rawQuery: "b=2&empty=&a=x+y&b=1&c~=it's%20(ok)*" });

    const result = await verify(req);

    expect(result.ok).toBe(true);
  });

  it('verifies percent-encoded paths (double encoding), keeping %2F distinct from /', async () => {
    const req = await signedRequest({ method: 'GET', path: '/local/things/a%20b%2Fc/%C3%A9' });

    const ok = await verify(req);
    const decoded = await verify({ ...req, url: '/local/things/a b/c/é' });

    expect(ok.ok).toBe(true);
    expect(decoded).toMatchObject({ ok: false, failure: 'signature_mismatch' });
  });

  it('accepts temporary credentials whose session token matches', async () => {
    const temporary: LocalCredential = { ...ROLE, accessKeyId: 'ASIATEMP', sessionToken: 'session-token-value' };
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY, credential: temporary });

    const result = await verify(req, { credentials: [temporary] });

    expect(result.ok).toBe(true);
  });
});

describe('verifySigV4: AWS published examples (independent of smithy)', () => {
  it('IAM ListUsers example from the SigV4 documentation', async () => {
    const req: SigV4Request = {
      method: 'GET',
      url: '/?Action=ListUsers&Version=2010-05-08',
      headers: {
        host: 'iam.amazonaws.com',
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        'x-amz-date': '20150830T123600Z',
        authorization:
          'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7',
      },
      body: new Uint8Array(),
    };
    const example: LocalCredential = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', principalArn: 'arn:aws:iam::123456789012:user/example' };

    const result = await verifySigV4(req, {
      lookup: (akid) => (akid === example.accessKeyId ? example : undefined),
      region: 'us-east-1',
      service: 'iam',
      now: () => new Date('2015-08-30T12:36:00Z'),
    });

    expect(result.ok).toBe(true);
  });

  it('get-vanilla from the SigV4 test suite', async () => {
    const req: SigV4Request = {
      method: 'GET',
      url: '/',
      headers: {
        host: 'example.amazonaws.com',
        'x-amz-date': '20150830T123600Z',
        authorization:
          'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
      },
      body: new Uint8Array(),
    };
    const example: LocalCredential = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', principalArn: 'arn:aws:iam::123456789012:user/example' };

    const result = await verifySigV4(req, {
      lookup: () => example,
      region: 'us-east-1',
      service: 'service',
      now: () => new Date('2015-08-30T12:36:00Z'),
    });

    expect(result.ok).toBe(true);
  });
});

describe('verifySigV4: refusals', () => {
  it('tampered body -> signature_mismatch', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });

    const result = await verify({ ...req, body: new TextEncoder().encode(TOKEN_BODY.replace('orders:read', 'orders:write')) });

    expect(result).toMatchObject({ ok: false, failure: 'signature_mismatch' });
  });

  it('tampered body with the original x-amz-content-sha256 kept -> signature_mismatch', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY, applyChecksum: true });

    const result = await verify({ ...req, body: new TextEncoder().encode('{"audience":"https://payments.example.com"}') });

    expect(result).toMatchObject({ ok: false, failure: 'signature_mismatch' });
  });

  it('tampered path -> signature_mismatch', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });

    const result = await verify({ ...req, url: '/local/admin' });

    expect(result).toMatchObject({ ok: false, failure: 'signature_mismatch' });
  });

  it('tampered query -> signature_mismatch', async () => {
    const req = await signedRequest({ method: 'GET', path: '/local/things', query: { a: '1' } });

    const result = await verify({ ...req, url: '/local/things?a=2' });

    expect(result).toMatchObject({ ok: false, failure: 'signature_mismatch' });
  });

  it('tampered method or signed header -> signature_mismatch', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });

    const method = await verify({ ...req, method: 'PUT' });
    const header = await verify({ ...req, headers: { ...req.headers, 'content-type': 'text/plain' } });

    expect(method).toMatchObject({ ok: false, failure: 'signature_mismatch' });
    expect(header).toMatchObject({ ok: false, failure: 'signature_mismatch' });
  });

  it('wrong secret -> signature_mismatch, and the message holds no secret', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY, credential: { accessKeyId: ROLE.accessKeyId, secretAccessKey: 'not-the-secret' } });

    const result = await verify(req);

    expect(result).toMatchObject({ ok: false, failure: 'signature_mismatch' });
    expect(JSON.stringify(result)).not.toContain(ROLE.secretAccessKey);
    expect(JSON.stringify(result)).not.toContain('not-the-secret');
  });

  it('unknown access key -> unknown_key', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY, credential: { accessKeyId: 'AKIAUNKNOWN', secretAccessKey: 'whatever' } });

    const result = await verify(req);

    expect(result).toMatchObject({ ok: false, failure: 'unknown_key' });
  });

  it('a session token the credential does not have, or the wrong one -> unknown_key', async () => {
    const withToken = await signedRequest({ path: '/local/token', body: TOKEN_BODY, credential: { ...ROLE, sessionToken: 'forged' } });
    const temporary: LocalCredential = { ...ROLE, sessionToken: 'the-real-token' };

    const longTerm = await verify(withToken);
    const wrong = await verify(withToken, { credentials: [temporary] });

    expect(longTerm).toMatchObject({ ok: false, failure: 'unknown_key' });
    expect(wrong).toMatchObject({ ok: false, failure: 'unknown_key' });
    expect(JSON.stringify(wrong)).not.toContain('the-real-token');
  });

  it('X-Amz-Date more than 5 minutes from the server clock, either way -> stale', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });

    const late = await verify(req, { now: new Date(NOW.getTime() + 5 * 60_000 + 1000) });
    const early = await verify(req, { now: new Date(NOW.getTime() - 5 * 60_000 - 1000) });
    const withinSkew = await verify(req, { now: new Date(NOW.getTime() + 4 * 60_000) });

    expect(late).toMatchObject({ ok: false, failure: 'stale' });
    expect(early).toMatchObject({ ok: false, failure: 'stale' });
    expect(withinSkew.ok).toBe(true);
  });

  it('signed for another region or service -> wrong_scope', async () => {
    const otherRegion = await signedRequest({ path: '/local/token', body: TOKEN_BODY, region: 'us-east-1' });
    const otherService = await signedRequest({ path: '/local/token', body: TOKEN_BODY, service: 'lambda' });

    expect(await verify(otherRegion)).toMatchObject({ ok: false, failure: 'wrong_scope' });
    expect(await verify(otherService)).toMatchObject({ ok: false, failure: 'wrong_scope' });
  });

  it('credential scope date that does not match X-Amz-Date -> wrong_scope', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });
    const authorization = String(req.headers.authorization).replace('/20251124/', '/20251123/');

    const result = await verify({ ...req, headers: { ...req.headers, authorization } });

    expect(result).toMatchObject({ ok: false, failure: 'wrong_scope' });
  });

  it('no Authorization header -> missing', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });
    const { authorization: _dropped, ...headers } = req.headers;

    const result = await verify({ ...req, headers });

    expect(result).toMatchObject({ ok: false, failure: 'missing' });
  });

  it.each([
    ['another scheme', 'Bearer abc.def.ghi'],
    ['no Signature', 'AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001/20251124/eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date'],
    ['short credential', `AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001/20251124/eu-west-1, SignedHeaders=host;x-amz-date, Signature=${'a'.repeat(64)}`],
    ['bad terminator', `AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001/20251124/eu-west-1/execute-api/aws5_request, SignedHeaders=host;x-amz-date, Signature=${'a'.repeat(64)}`],
    ['short signature', 'AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001/20251124/eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc'],
    ['host not signed', `AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001/20251124/eu-west-1/execute-api/aws4_request, SignedHeaders=content-type;x-amz-date, Signature=${'a'.repeat(64)}`],
    ['unsorted SignedHeaders', `AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001/20251124/eu-west-1/execute-api/aws4_request, SignedHeaders=x-amz-date;host, Signature=${'a'.repeat(64)}`],
    ['upper-case SignedHeaders', `AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001/20251124/eu-west-1/execute-api/aws4_request, SignedHeaders=Host;X-Amz-Date, Signature=${'a'.repeat(64)}`],
  ])('malformed Authorization header (%s) -> malformed', async (_case, authorization) => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });

    const result = await verify({ ...req, headers: { ...req.headers, authorization } });

    expect(result).toMatchObject({ ok: false, failure: 'malformed' });
  });

  it('missing or malformed X-Amz-Date -> malformed', async () => {
    const req = await signedRequest({ path: '/local/token', body: TOKEN_BODY });
    const { 'x-amz-date': _dropped, ...withoutDate } = req.headers;

    const missing = await verify({ ...req, headers: withoutDate });
    const impossible = await verify({ ...req, headers: { ...req.headers, 'x-amz-date': '20250231T000000Z' } });

    expect(missing).toMatchObject({ ok: false, failure: 'malformed' });
    expect(impossible).toMatchObject({ ok: false, failure: 'malformed' });
  });

  it('presigned query parameters -> malformed, alone or next to a header', async () => {
    const req = await signedRequest({ method: 'GET', path: '/local/things' });
    const { authorization: _dropped, ...unsignedHeaders } = req.headers;

    const both = await verify({ ...req, url: '/local/things?X-Amz-Signature=abc' });
    const presignedOnly = await verify({ ...req, headers: unsignedHeaders, url: '/local/things?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc' });

    expect(both).toMatchObject({ ok: false, failure: 'malformed' });
    expect(presignedOnly).toMatchObject({ ok: false, failure: 'malformed' });
  });
});

/** Presign as the SDK does (smithy `presign()`), and return the GET a server receives for that URL. */
async function presignedRequest(input: {
  query?: Record<string, string>;
  headers?: Record<string, string>;
  credential?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  region?: string;
  service?: string;
  expiresIn?: number;
  signingDate?: Date;
}): Promise<SigV4Request> {
  const signer = new SignatureV4({
    service: input.service ?? 'sts',
    region: input.region ?? REGION,
    credentials: input.credential ?? ROLE,
    sha256: Hash.bind(null, 'sha256'),
  });
  const headers = { host: HOST, ...input.headers };
  const presigned = await signer.presign(
    new HttpRequest({ method: 'GET', protocol: 'http:', hostname: '127.0.0.1', port: 4010, path: '/', query: input.query ?? { Action: 'GetCallerIdentity', Version: '2011-06-15' }, headers }),
    { signingDate: input.signingDate ?? NOW, expiresIn: input.expiresIn ?? 60 },
  );
  const query = Object.entries(presigned.query ?? {})
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return { method: 'GET', url: `/?${query}`, headers, body: new Uint8Array() };
}

function verifyPresigned(
  req: SigV4Request,
  overrides: { now?: Date; region?: string; service?: string; credentials?: LocalCredential[]; validityMs?: number } = {},
) {
  const credentials = overrides.credentials ?? [ROLE];
  return verifyPresignedSigV4(req, {
    lookup: (akid) => credentials.find((c) => c.accessKeyId === akid),
    region: overrides.region ?? REGION,
    service: overrides.service ?? 'sts',
    now: () => overrides.now ?? NOW,
    ...(overrides.validityMs === undefined ? {} : { validityMs: overrides.validityMs }),
  });
}

function withQuery(req: SigV4Request, edit: (params: URLSearchParams) => void): SigV4Request {
  const params = new URLSearchParams(req.url.slice(2));
  edit(params);
  return { ...req, url: `/?${params.toString()}` };
}

const BINDING_HEADERS = { 'x-token-vendor-request': 'a'.repeat(64), 'x-token-vendor-server-id': 'token-vendor-test' };

describe('verifyPresignedSigV4: URLs presigned by the SDKs', () => {
  it('accepts a smithy presign() with extra signed headers, and returns the credential', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS });
    expect(new URLSearchParams(req.url.slice(2)).get('X-Amz-SignedHeaders')).toBe('host;x-token-vendor-request;x-token-vendor-server-id');

    expect(verifyPresigned(req)).toEqual({ ok: true, credential: ROLE });
  });

  it('accepts temporary credentials whose session token is in the query', async () => {
    const temporary: LocalCredential = { ...ROLE, accessKeyId: 'ASIATEMP', sessionToken: 'session/token+value==' };
    const req = await presignedRequest({ headers: BINDING_HEADERS, credential: temporary });

    expect(verifyPresigned(req, { credentials: [temporary] }).ok).toBe(true);
  });

  it('accepts a URL presigned by botocore (SigV4QueryAuth), token included', () => {
    const temporary: LocalCredential = { ...ROLE, accessKeyId: 'ASIATEMP', sessionToken: 'session/token+value==' };
    const url = botocorePresign({
      url: `http://${HOST}/?Action=GetCallerIdentity&Version=2011-06-15`,
      headers: BINDING_HEADERS,
      credential: temporary,
      region: REGION,
      service: 'sts',
      expires: 60,
      amzDate: '20251124T030700Z',
    });
    const req: SigV4Request = { method: 'GET', url: url.slice(`http://${HOST}`.length), headers: { host: HOST, ...BINDING_HEADERS }, body: new Uint8Array() };

    expect(verifyPresigned(req, { credentials: [temporary] })).toEqual({ ok: true, credential: temporary });
    // the same URL with one bound header changed is another request
    expect(verifyPresigned({ ...req, headers: { ...req.headers, 'x-token-vendor-server-id': 'token-vendor-prod' } }, { credentials: [temporary] })).toMatchObject({
      ok: false,
      failure: 'signature_mismatch',
    });
  });
});

describe('verifyPresignedSigV4: the validity window', () => {
  it('honours X-Amz-Expires by default: valid through it, stale after', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS, expiresIn: 60 });

    expect(verifyPresigned(req, { now: new Date(NOW.getTime() + 60_000) }).ok).toBe(true);
    expect(verifyPresigned(req, { now: new Date(NOW.getTime() + 61_000) })).toMatchObject({ ok: false, failure: 'stale' });
  });

  it('with validityMs, ignores X-Amz-Expires (as STS does for GetCallerIdentity)', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS, expiresIn: 60 });
    const fifteenMinutes = 15 * 60_000;

    expect(verifyPresigned(req, { now: new Date(NOW.getTime() + 10 * 60_000), validityMs: fifteenMinutes }).ok).toBe(true);
    expect(verifyPresigned(req, { now: new Date(NOW.getTime() + fifteenMinutes + 1000), validityMs: fifteenMinutes })).toMatchObject({
      ok: false,
      failure: 'stale',
    });
  });

  it('refuses X-Amz-Date more than the skew ahead of the server clock', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS });

    expect(verifyPresigned(req, { now: new Date(NOW.getTime() - 5 * 60_000 - 1000) })).toMatchObject({ ok: false, failure: 'stale' });
    expect(verifyPresigned(req, { now: new Date(NOW.getTime() - 4 * 60_000) }).ok).toBe(true);
  });
});

describe('verifyPresignedSigV4: refusals', () => {
  it('a tampered query parameter, or one added -> signature_mismatch', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS });

    const action = verifyPresigned(withQuery(req, (q) => q.set('Action', 'AssumeRole')));
    const added = verifyPresigned(withQuery(req, (q) => q.append('RoleArn', 'arn:aws:iam::123456789012:role/admin')));
    const longer = verifyPresigned(withQuery(req, (q) => q.set('X-Amz-Expires', '900')));

    expect(action).toMatchObject({ ok: false, failure: 'signature_mismatch' });
    expect(added).toMatchObject({ ok: false, failure: 'signature_mismatch' });
    expect(longer).toMatchObject({ ok: false, failure: 'signature_mismatch' });
  });

  it('a signed header changed or missing, another host, another method or path -> signature_mismatch', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS });
    const { 'x-token-vendor-request': _dropped, ...withoutBinding } = req.headers;

    expect(verifyPresigned({ ...req, headers: { ...req.headers, 'x-token-vendor-request': 'b'.repeat(64) } })).toMatchObject({ failure: 'signature_mismatch' });
    expect(verifyPresigned({ ...req, headers: withoutBinding })).toMatchObject({ failure: 'signature_mismatch' });
    expect(verifyPresigned({ ...req, headers: { ...req.headers, host: '127.0.0.1:4011' } })).toMatchObject({ failure: 'signature_mismatch' });
    expect(verifyPresigned({ ...req, method: 'POST' })).toMatchObject({ failure: 'signature_mismatch' });
    expect(verifyPresigned({ ...req, url: `/x${req.url}` })).toMatchObject({ failure: 'signature_mismatch' });
  });

  it('a body on a GET signed with the empty payload hash -> signature_mismatch', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS });

    expect(verifyPresigned({ ...req, body: new TextEncoder().encode('Action=AssumeRole') })).toMatchObject({ failure: 'signature_mismatch' });
  });

  it('wrong secret -> signature_mismatch, and the message holds no secret or signature', async () => {
    const req = await presignedRequest({ headers: BINDING_HEADERS, credential: { accessKeyId: ROLE.accessKeyId, secretAccessKey: 'not-the-secret' } });
    const genuine = await presignedRequest({ headers: BINDING_HEADERS });

    const result = verifyPresigned(req);

    expect(result).toMatchObject({ ok: false, failure: 'signature_mismatch' });
    const text = JSON.stringify(result);
    expect(text).not.toContain(ROLE.secretAccessKey);
    expect(text).not.toContain(new URLSearchParams(genuine.url.slice(2)).get('X-Amz-Signature'));
  });

  it('unknown key, or a session token that is missing, wrong or not expected -> unknown_key', async () => {
    const temporary: LocalCredential = { ...ROLE, sessionToken: 'the-real-token' };
    const unknown = await presignedRequest({ credential: { accessKeyId: 'AKIAUNKNOWN', secretAccessKey: 'x' } });
    const noToken = await presignedRequest({ credential: ROLE });
    const wrongToken = await presignedRequest({ credential: { ...ROLE, sessionToken: 'forged' } });

    expect(verifyPresigned(unknown)).toMatchObject({ ok: false, failure: 'unknown_key' });
    expect(verifyPresigned(noToken, { credentials: [temporary] })).toMatchObject({ ok: false, failure: 'unknown_key' });
    expect(verifyPresigned(wrongToken, { credentials: [temporary] })).toMatchObject({ ok: false, failure: 'unknown_key' });
    expect(verifyPresigned(wrongToken)).toMatchObject({ ok: false, failure: 'unknown_key' });
    expect(JSON.stringify(verifyPresigned(wrongToken, { credentials: [temporary] }))).not.toContain('the-real-token');
  });

  it('signed for another region or service -> wrong_scope', async () => {
    expect(verifyPresigned(await presignedRequest({ region: 'us-east-1' }))).toMatchObject({ ok: false, failure: 'wrong_scope' });
    expect(verifyPresigned(await presignedRequest({ service: 'execute-api' }))).toMatchObject({ ok: false, failure: 'wrong_scope' });
  });

  it('no presign parameters -> missing; an Authorization header as well -> malformed', async () => {
    const req = await presignedRequest({});
    const plain: SigV4Request = { method: 'GET', url: '/?Action=GetCallerIdentity&Version=2011-06-15', headers: { host: HOST }, body: new Uint8Array() };

    expect(verifyPresigned(plain)).toMatchObject({ ok: false, failure: 'missing' });
    expect(verifyPresigned({ ...req, headers: { ...req.headers, authorization: 'AWS4-HMAC-SHA256 Credential=x' } })).toMatchObject({ ok: false, failure: 'malformed' });
  });

  it.each([
    ['X-Amz-Expires missing', (q: URLSearchParams) => q.delete('X-Amz-Expires')],
    ['X-Amz-Expires zero', (q: URLSearchParams) => q.set('X-Amz-Expires', '0')],
    ['X-Amz-Expires over 7 days', (q: URLSearchParams) => q.set('X-Amz-Expires', '604801')],
    ['X-Amz-Date missing', (q: URLSearchParams) => q.delete('X-Amz-Date')],
    ['X-Amz-Date impossible', (q: URLSearchParams) => q.set('X-Amz-Date', '20250231T000000Z')],
    ['another algorithm', (q: URLSearchParams) => q.set('X-Amz-Algorithm', 'AWS4-HMAC-SHA512')],
    ['short signature', (q: URLSearchParams) => q.set('X-Amz-Signature', 'abc')],
    ['repeated signature', (q: URLSearchParams) => q.append('X-Amz-Signature', 'a'.repeat(64))],
    ['host not signed', (q: URLSearchParams) => q.set('X-Amz-SignedHeaders', 'x-token-vendor-request;x-token-vendor-server-id')],
    ['unsorted signed headers', (q: URLSearchParams) => q.set('X-Amz-SignedHeaders', 'x-token-vendor-request;host')],
    ['short credential', (q: URLSearchParams) => q.set('X-Amz-Credential', 'AKIAORDERSAPI0000001/20251124/eu-west-1')],
  ])('malformed presign parameters (%s) -> malformed', async (_case, edit) => {
    const req = await presignedRequest({ headers: BINDING_HEADERS });

    expect(verifyPresigned(withQuery(req, edit))).toMatchObject({ ok: false, failure: 'malformed' });
  });
});
