import type { APIGatewayProxyEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import {
  ClientErrorCode,
  TokenVendorClient,
  requestBindingHash,
  type TokenVendorApiOptions,
  type TokenVendorDirectOptions,
} from '../../client/index.js';
import { checkProof, requestBinding as vendorRequestBinding } from '../../functions/core/identityProof.js';
import { startLocalGateway } from '../../local/gateway.js';
import { verifyPresignedSigV4 } from '../../local/sigv4.js';
import { CREDENTIALS, ORDERS, REGION, SERVER_ID, caught, deferred, fakeClock, fakeFetch, headersOf, proofUrl, tokenBody, tokenResponse } from './fakes.js';

const ENDPOINT = 'https://abc123.execute-api.eu-west-1.amazonaws.com/prod';
const FUNCTION = 'auth0-token-vendor-prod-vend';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/teams/orders/orders-api';

function client(overrides: Partial<TokenVendorApiOptions>): TokenVendorClient {
  return new TokenVendorClient({ endpoint: ENDPOINT, region: REGION, serverId: SERVER_ID, credentials: CREDENTIALS, ...overrides });
}

function direct(overrides: Partial<TokenVendorDirectOptions>): TokenVendorClient {
  return new TokenVendorClient({ functionName: FUNCTION, region: REGION, serverId: SERVER_ID, credentials: CREDENTIALS, ...overrides });
}

/**
 * Does `proof` verify, as the vendor would use it: checked by the vendor's own pre-STS checks
 * (functions/core/identityProof.ts), which rebuild the request and supply the binding headers
 * for (`audience`, `scope`) and `serverId`, the request binding being the vendor's
 * `requestBinding` with `organization` (issue 12); then the signature checked as the local STS
 * stand-in checks it (local/sigv4.ts `verifyPresignedSigV4`).
 */
function provesFor(proof: string, audience: string, scope: string | undefined, serverId = SERVER_ID, organization?: string): boolean {
  const checked = checkProof(proof, { audience, scope }, { region: REGION, serverId }, Date.now());
  const url = new URL(checked.url);
  const headers = { host: url.host, ...checked.headers, 'x-token-vendor-request': vendorRequestBinding(audience, scope, organization) };
  const result = verifyPresignedSigV4(
    { method: 'GET', url: `${url.pathname}${url.search}`, headers, body: new Uint8Array() },
    {
      region: REGION,
      service: 'sts',
      // Any session token the proof carries is the one "issued": this checks the signature only.
      lookup: (id) => (id === CREDENTIALS.accessKeyId ? { ...CREDENTIALS, principalArn: ROLE_ARN, ...sessionOf(url) } : undefined),
    },
  );
  return result.ok;
}

function sessionOf(url: URL): { sessionToken?: string } {
  const token = url.searchParams.get('X-Amz-Security-Token');
  return token === null ? {} : { sessionToken: token };
}

describe('TokenVendorClient: the request', () => {
  it('POSTs a SigV4-signed JSON body to {endpoint}/token and returns the token with expiresAt from receipt', async () => {
    const clock = fakeClock();
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-1', 3600, 'orders:read orders:write'));
    const tvc = client({ fetch, now: clock.now, endpoint: `${ENDPOINT}/` });

    const token = await tvc.getToken({ audience: ORDERS, scope: 'orders:write  orders:read orders:write' });

    expect(token).toEqual({ accessToken: 'tok-1', tokenType: 'Bearer', scope: 'orders:read orders:write', expiresAt: clock.now() + 3_600_000 });
    expect(calls).toHaveLength(1);
    const { url, init } = calls[0]!;
    expect(url).toBe(`${ENDPOINT}/token`);
    expect(init.method).toBe('POST');
    expect(JSON.parse(String(init.body))).toEqual({ audience: ORDERS, scope: 'orders:read orders:write' });
    const headers = init.headers as Record<string, string>;
    expect(headers['content-type']).toBe('application/json');
    expect(headers['x-amz-date']).toMatch(/^\d{8}T\d{6}Z$/);
    expect(headers.authorization).toMatch(
      // The proof header is signed too: it cannot be swapped on a request in transit.
      /^AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-token-vendor-proof, Signature=[0-9a-f]{64}$/,
    );
    expect(headers.host).toBeUndefined();
    expect(init.signal).toBeInstanceOf(AbortSignal);
  });

  it('omits scope from the body when none is asked for, and takes the requested scope when the answer has none', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-1'));
    const tvc = client({ fetch });

    const token = await tvc.getToken({ audience: ORDERS });

    expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ audience: ORDERS });
    expect(token.scope).toBe('');
  });
});

describe('TokenVendorClient: the identity proof on the API path', () => {
  it('sends X-Token-Vendor-Proof: a presigned sts:GetCallerIdentity for 60 s that signs exactly the binding headers', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-1'));

    await client({ fetch }).getToken({ audience: ORDERS, scope: 'write:orders read:orders' });

    const url = proofUrl(headersOf(calls[0]!)['x-token-vendor-proof']);
    expect(url.origin).toBe('https://sts.eu-west-1.amazonaws.com');
    expect(url.pathname).toBe('/');
    const query = [...url.searchParams];
    expect(query.map(([name]) => name)).toEqual([
      'Action',
      'Version',
      'X-Amz-Algorithm',
      'X-Amz-Credential',
      'X-Amz-Date',
      'X-Amz-Expires',
      'X-Amz-SignedHeaders',
      'X-Amz-Signature',
    ]);
    const get = (name: string) => url.searchParams.get(name);
    expect(get('Action')).toBe('GetCallerIdentity');
    expect(get('Version')).toBe('2011-06-15');
    expect(get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(get('X-Amz-Credential')).toMatch(/^AKIAORDERSAPI0000001\/\d{8}\/eu-west-1\/sts\/aws4_request$/);
    expect(get('X-Amz-Expires')).toBe('60');
    expect(get('X-Amz-SignedHeaders')).toBe('host;x-token-vendor-request;x-token-vendor-server-id');
    // The binding values are signed, never sent: the vendor supplies its own.
    expect(url.href).not.toContain(SERVER_ID);
    expect(url.href).not.toContain(requestBindingHash(ORDERS, 'read:orders write:orders'));
  });

  it('the proof is good for this deployment, audience and normalized scope only', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-1'));

    await client({ fetch }).getToken({ audience: ORDERS, scope: 'write:orders read:orders write:orders' });
    const proof = headersOf(calls[0]!)['x-token-vendor-proof'] ?? '';

    expect(provesFor(proof, ORDERS, ' read:orders write:orders')).toBe(true);
    expect(provesFor(proof, ORDERS, 'read:orders')).toBe(false);
    expect(provesFor(proof, ORDERS, undefined)).toBe(false);
    expect(provesFor(proof, 'https://payments.example.com', 'read:orders write:orders')).toBe(false);
    expect(provesFor(proof, ORDERS, 'read:orders write:orders', 'token-vendor-other')).toBe(false);
  });

  it('the binding hash is SHA-256 of tvp1\\n<audience>\\n<normalized scope>, scope empty when none is asked for', () => {
    // Known answers from coreutils: printf 'tvp1\nhttps://orders.example.com\n' | sha256sum, and with 'a b' appended.
    const none = 'cfb689387f9bd1f3ec6978de096f75e385b244ce793709123f68008dfad3f8f0';
    const ab = '2b25d839df1e40c8c6a7c5c13227668d365d9ed6c0c664fd33de870e38bf1738';

    expect([requestBindingHash(ORDERS, undefined), requestBindingHash(ORDERS, ''), requestBindingHash(ORDERS, '  ')]).toEqual([none, none, none]);
    expect([requestBindingHash(ORDERS, 'a b'), requestBindingHash(ORDERS, ' b a b ')]).toEqual([ab, ab]);
  });

  it('makes a fresh proof for every request, with the credentials current then', async () => {
    // A provider that hands out new temporary credentials on every call, as a rotating role would.
    let issued = 0;
    const credentials = async () => ({ ...CREDENTIALS, sessionToken: `session-${++issued}` });
    const { fetch, calls } = fakeFetch(() => tokenResponse('short-lived', 30));
    const tvc = client({ fetch, credentials, refreshMarginSeconds: 60 });

    await tvc.getToken({ audience: ORDERS });
    await tvc.getToken({ audience: ORDERS });

    expect(calls).toHaveLength(2);
    const [first, second] = calls.map((call) => proofUrl(headersOf(call)['x-token-vendor-proof']));
    expect(first?.searchParams.get('X-Amz-Security-Token')).not.toBe(second?.searchParams.get('X-Amz-Security-Token'));
    for (const call of calls) expect(provesFor(headersOf(call)['x-token-vendor-proof'] ?? '', ORDERS, undefined)).toBe(true);
  });

  it('stsEndpoint names the local STS stand-in in the proof; the credential scope stays the region', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-1'));

    await client({ fetch, stsEndpoint: 'http://127.0.0.1:4599' }).getToken({ audience: ORDERS });

    const url = proofUrl(headersOf(calls[0]!)['x-token-vendor-proof']);
    expect(url.origin).toBe('http://127.0.0.1:4599');
    expect(url.searchParams.get('X-Amz-Credential')).toMatch(/\/eu-west-1\/sts\/aws4_request$/);
  });

  it('a China region names the .amazonaws.com.cn STS host', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-1'));

    await client({ fetch, region: 'cn-north-1', endpoint: 'https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod' }).getToken({ audience: ORDERS });

    expect(proofUrl(headersOf(calls[0]!)['x-token-vendor-proof']).origin).toBe('https://sts.cn-north-1.amazonaws.com.cn');
  });

  it('refuses options a proof cannot be made with, before any request', () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('never'));

    expect(() => client({ fetch, serverId: '' })).toThrow(/serverId/);
    expect(() => client({ fetch, serverId: undefined as unknown as string })).toThrow(/serverId/);
    expect(() => client({ fetch, region: 'eu-west-1.evil.example/' })).toThrow(/region/);
    expect(() => client({ fetch, stsEndpoint: 'http://sts.example.com' })).toThrow(/loopback/);
    expect(() => client({ fetch, stsEndpoint: 'https://sts.example.com/path' })).toThrow(/origin only/);
    expect(calls).toHaveLength(0);
  });
});

describe('TokenVendorClient: direct invocation (scheduled jobs)', () => {
  it('calls Lambda Invoke, signed for service lambda, with {audience, scope, proof}', async () => {
    const clock = fakeClock();
    const { fetch, calls } = fakeFetch(() => Response.json(tokenBody('tok-direct', 3600, 'read:orders')));

    const token = await direct({ fetch, now: clock.now }).getToken({ audience: ORDERS, scope: 'read:orders' });

    expect(token).toEqual({ accessToken: 'tok-direct', tokenType: 'Bearer', scope: 'read:orders', expiresAt: clock.now() + 3_600_000 });
    const { url, init } = calls[0]!;
    expect(url).toBe(`https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/${FUNCTION}/invocations`);
    expect(init.method).toBe('POST');
    const headers = headersOf(calls[0]!);
    expect(headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001\/\d{8}\/eu-west-1\/lambda\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/);
    expect(headers['x-amz-invocation-type']).toBe('RequestResponse');
    expect(headers['x-token-vendor-proof']).toBeUndefined();
    const event = JSON.parse(String(init.body)) as { audience: string; scope: string; proof: string };
    expect(Object.keys(event).sort()).toEqual(['audience', 'proof', 'scope']);
    expect(event).toMatchObject({ audience: ORDERS, scope: 'read:orders' });
    expect(provesFor(event.proof, ORDERS, 'read:orders')).toBe(true);
  });

  it('omits scope when none is asked for; an ARN is one percent-encoded path segment; lambdaEndpoint overrides the host', async () => {
    const arn = 'arn:aws:lambda:eu-west-1:123456789012:function:auth0-token-vendor-prod-vend:live';
    const { fetch, calls } = fakeFetch(() => Response.json(tokenBody('tok-direct')));

    await direct({ fetch, functionName: arn, lambdaEndpoint: 'http://127.0.0.1:4600' }).getToken({ audience: ORDERS });

    expect(calls[0]!.url).toBe(`http://127.0.0.1:4600/2015-03-31/functions/${encodeURIComponent(arn)}/invocations`);
    const event = JSON.parse(String(calls[0]!.init.body)) as Record<string, string>;
    expect(Object.keys(event).sort()).toEqual(['audience', 'proof']);
    expect(provesFor(event.proof ?? '', ORDERS, undefined)).toBe(true);
  });

  it('shares the cache: a token is served from memory until expiresAt - margin', async () => {
    const clock = fakeClock();
    const { fetch, calls } = fakeFetch(
      () => Response.json(tokenBody('tok-1', 3600)),
      () => Response.json(tokenBody('tok-2', 3600)),
    );
    const tvc = direct({ fetch, now: clock.now, refreshMarginSeconds: 60 });

    const first = await tvc.getToken({ audience: ORDERS, scope: 'b a' });
    clock.advance(3_539_999);
    const cached = await tvc.getToken({ audience: ORDERS, scope: 'a b' });
    clock.advance(1);
    const refreshed = await tvc.getToken({ audience: ORDERS, scope: 'a b' });

    expect([first.accessToken, cached.accessToken, refreshed.accessToken]).toEqual(['tok-1', 'tok-1', 'tok-2']);
    expect(calls).toHaveLength(2);
  });

  it('shares the single flight: 10 concurrent calls make one invocation, and a failure is not cached', async () => {
    const gate = deferred<Response>();
    const { fetch, calls } = fakeFetch(
      () => gate.promise,
      () => Response.json(tokenBody('tok-after')),
    );
    const tvc = direct({ fetch });

    const pending = Array.from({ length: 10 }, () => tvc.getToken({ audience: ORDERS, scope: 'read:orders' }));
    gate.resolve(Response.json({ error: 'temporarily_unavailable', error_description: 'IdP down', status: 503, retry_after: 4 }));
    const errors = await Promise.all(pending.map(caught));
    const retry = await tvc.getToken({ audience: ORDERS, scope: 'read:orders' });

    expect(new Set(errors)).toHaveProperty('size', 1);
    expect(retry.accessToken).toBe('tok-after');
    expect(calls).toHaveLength(2);
  });

  it('rejects both or neither of endpoint and functionName, and a name Invoke would refuse', () => {
    const both = { endpoint: ENDPOINT, functionName: FUNCTION, region: REGION, serverId: SERVER_ID, credentials: CREDENTIALS };
    const neither = { region: REGION, serverId: SERVER_ID, credentials: CREDENTIALS };

    expect(() => new TokenVendorClient(both as unknown as TokenVendorApiOptions)).toThrow(/exactly one/);
    expect(() => new TokenVendorClient(neither as unknown as TokenVendorApiOptions)).toThrow(/exactly one/);
    expect(() => direct({ functionName: 'vend/../../other' })).toThrow(/functionName/);
    expect(() => direct({ lambdaEndpoint: 'http://lambda.example.com' })).toThrow(/loopback/);
  });
});

describe('TokenVendorClient: direct-invocation answers map to the errors the API path gives', () => {
  it.each([
    ['the vendor refuses (403)', { error: 'access_denied', error_description: 'reporting-daily may not ask for write:orders', status: 403 }, { status: 403, code: 'access_denied' }],
    ['a bad request (400)', { error: 'invalid_request', error_description: 'unknown field', status: 400 }, { status: 400, code: 'invalid_request' }],
    ['the IdP refuses (502)', { error: 'access_denied', error_description: 'Auth0 refused', status: 502 }, { status: 502, code: 'access_denied' }],
    ['unavailable, with retry_after', { error: 'temporarily_unavailable', error_description: 'retry later', status: 503, retry_after: 7 }, { status: 503, code: 'temporarily_unavailable', retryAfterSeconds: 7 }],
    ['an error body without status', { error: 'temporarily_unavailable', error_description: 'retry later' }, { status: 503, code: 'temporarily_unavailable' }],
  ])('%s', async (_case, body, expected) => {
    const { fetch } = fakeFetch(() => Response.json(body));

    const error = await caught(direct({ fetch }).getToken({ audience: ORDERS }));

    expect(error).toMatchObject(expected);
    expect(error.message).toContain(body.error_description);
    if (!('retryAfterSeconds' in expected)) expect(error.retryAfterSeconds).toBeUndefined();
  });

  it('the function crashed (X-Amz-Function-Error) -> function_error 502, naming the error type but not its message', async () => {
    const { fetch } = fakeFetch(() =>
      Response.json({ errorType: 'Runtime.ExitError', errorMessage: 'leaky-detail', trace: ['leaky-trace'] }, { headers: { 'x-amz-function-error': 'Unhandled' } }),
    );

    const error = await caught(direct({ fetch }).getToken({ audience: ORDERS }));

    expect(error).toMatchObject({ status: 502, code: ClientErrorCode.functionError });
    expect(error.message).toContain('Unhandled: Runtime.ExitError');
    expect(error.message).not.toContain('leaky');
  });

  it('Lambda itself refuses -> http_error with its status and error type; a throttle carries Retry-After', async () => {
    const { fetch } = fakeFetch(
      () =>
        Response.json(
          { Type: 'User', message: 'User: arn:aws:sts::123456789012:assumed-role/x/y is not authorized to perform: lambda:InvokeFunction' },
          { status: 403, headers: { 'x-amzn-errortype': 'AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/' } },
        ),
      () => Response.json({ Type: 'User', message: 'Rate Exceeded.', Reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' }, { status: 429, headers: { 'x-amzn-errortype': 'TooManyRequestsException', 'retry-after': '2' } }),
    );
    const tvc = direct({ fetch });

    const denied = await caught(tvc.getToken({ audience: ORDERS }));
    const throttled = await caught(tvc.getToken({ audience: ORDERS }));

    expect(denied).toMatchObject({ status: 403, code: ClientErrorCode.httpError });
    expect(denied.message).toBe(
      'Lambda refused the invocation: 403 AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/x/y is not authorized to perform: lambda:InvokeFunction',
    );
    expect(throttled).toMatchObject({ status: 429, code: ClientErrorCode.httpError, retryAfterSeconds: 2 });
  });

  it.each([
    ['not JSON', 'access_token=leaky-token'],
    ['null', 'null'],
    ['an API Gateway-shaped answer', JSON.stringify({ statusCode: 200, body: JSON.stringify({ access_token: 'leaky-token' }) })],
    ['no expires_in', JSON.stringify({ access_token: 'leaky-token', token_type: 'Bearer' })],
  ])('an unusable answer (%s) -> invalid_response, never quoting the token', async (_case, text) => {
    const { fetch } = fakeFetch(() => new Response(text, { status: 200 }));

    const error = await caught(direct({ fetch }).getToken({ audience: ORDERS }));

    expect(error).toMatchObject({ status: 200, code: ClientErrorCode.invalidResponse });
    expect(error.message).not.toContain('leaky-token');
  });

  it('no credentials -> credentials_unavailable and no invocation; no answer -> network_error', async () => {
    const { fetch, calls } = fakeFetch(() => Promise.reject(new TypeError('fetch failed')));

    const noCredentials = await caught(direct({ fetch, credentials: () => Promise.reject(new Error('Could not load credentials')) }).getToken({ audience: ORDERS }));
    expect(calls).toHaveLength(0);
    const network = await caught(direct({ fetch }).getToken({ audience: ORDERS }));

    expect(noCredentials).toMatchObject({ status: 0, code: ClientErrorCode.credentialsUnavailable });
    expect(network).toMatchObject({ status: 0, code: ClientErrorCode.networkError });
  });
});

describe('TokenVendorClient: caching', () => {
  it('serves the cached token until expiresAt - margin, then fetches again', async () => {
    const clock = fakeClock();
    const { fetch, calls } = fakeFetch(
      () => tokenResponse('tok-1', 3600),
      () => tokenResponse('tok-2', 3600),
    );
    const tvc = client({ fetch, now: clock.now, refreshMarginSeconds: 60 });

    const first = await tvc.getToken({ audience: ORDERS, scope: 'a' });
    clock.advance(3_539_999); // 1 ms before expiresAt - 60 s
    const stillCached = await tvc.getToken({ audience: ORDERS, scope: 'a' });
    clock.advance(1); // exactly expiresAt - 60 s
    const refreshed = await tvc.getToken({ audience: ORDERS, scope: 'a' });

    expect(first.accessToken).toBe('tok-1');
    expect(stillCached.accessToken).toBe('tok-1');
    expect(refreshed.accessToken).toBe('tok-2');
    expect(calls).toHaveLength(2);
  });

  it('keys the cache by audience and normalized scope', async () => {
    const { fetch, calls } = fakeFetch(
      () => tokenResponse('tok-ab'),
      () => tokenResponse('tok-other-audience'),
      () => tokenResponse('tok-c'),
    );
    const tvc = client({ fetch });

    const ab = await tvc.getToken({ audience: ORDERS, scope: 'b a a' });
    const sameKey = await tvc.getToken({ audience: ORDERS, scope: ' a b ' });
    const otherAudience = await tvc.getToken({ audience: 'https://payments.example.com', scope: 'a b' });
    const otherScope = await tvc.getToken({ audience: ORDERS, scope: 'c' });

    expect([ab.accessToken, sameKey.accessToken, otherAudience.accessToken, otherScope.accessToken]).toEqual(['tok-ab', 'tok-ab', 'tok-other-audience', 'tok-c']);
    expect(calls).toHaveLength(3);
  });

  it('10 concurrent calls for one key share a single fetch', async () => {
    const gate = deferred<Response>();
    const { fetch, calls } = fakeFetch(() => gate.promise);
    const tvc = client({ fetch });

    const pending = Array.from({ length: 10 }, () => tvc.getToken({ audience: ORDERS, scope: 'orders:read' }));
    await new Promise((r) => setTimeout(r, 10)); // let the signer finish and fetch start
    gate.resolve(tokenResponse('tok-shared'));
    const tokens = await Promise.all(pending);

    expect(calls).toHaveLength(1);
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(['tok-shared']));
  });

  it('never caches a failure: concurrent callers share it, the next call tries again', async () => {
    const gate = deferred<Response>();
    const { fetch, calls } = fakeFetch(
      () => gate.promise,
      () => tokenResponse('tok-after-failure'),
    );
    const tvc = client({ fetch });

    const failing = [tvc.getToken({ audience: ORDERS }), tvc.getToken({ audience: ORDERS })];
    gate.resolve(Response.json({ error: 'temporarily_unavailable', error_description: 'IdP down' }, { status: 503, headers: { 'retry-after': '3' } }));
    const errors = await Promise.all(failing.map(caught));
    const retry = await tvc.getToken({ audience: ORDERS });

    expect(errors.map((e) => e.code)).toEqual(['temporarily_unavailable', 'temporarily_unavailable']);
    expect(retry.accessToken).toBe('tok-after-failure');
    expect(calls).toHaveLength(2);
  });

  it('clear() forgets cached tokens; a request in flight during clear() answers but is not cached', async () => {
    const gate = deferred<Response>();
    const { fetch, calls } = fakeFetch(
      () => tokenResponse('tok-1'),
      () => gate.promise,
      () => tokenResponse('tok-3'),
    );
    const tvc = client({ fetch });

    await tvc.getToken({ audience: ORDERS });
    tvc.clear();
    const inFlight = tvc.getToken({ audience: ORDERS });
    await new Promise((r) => setTimeout(r, 10));
    tvc.clear();
    gate.resolve(tokenResponse('tok-2'));
    const second = await inFlight;
    const third = await tvc.getToken({ audience: ORDERS });

    expect(second.accessToken).toBe('tok-2');
    expect(third.accessToken).toBe('tok-3');
    expect(calls).toHaveLength(3);
  });

  it('returns a token with less than the margin left, but does not serve it from memory', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('short-lived', 30));
    const tvc = client({ fetch, refreshMarginSeconds: 60 });

    await tvc.getToken({ audience: ORDERS });
    await tvc.getToken({ audience: ORDERS });

    expect(calls).toHaveLength(2);
  });
});

describe('TokenVendorClient: errors', () => {
  it('maps an OAuth error body to status, code and message', async () => {
    const { fetch } = fakeFetch(() => Response.json({ error: 'access_denied', error_description: 'orders-api may not ask for payments' }, { status: 403 }));
    const tvc = client({ fetch });

    const error = await caught(tvc.getToken({ audience: 'https://payments.example.com' }));

    expect(error.name).toBe('TokenVendorError');
    expect(error.status).toBe(403);
    expect(error.code).toBe('access_denied');
    expect(error.message).toContain('orders-api may not ask for payments');
    expect(error.retryAfterSeconds).toBeUndefined();
  });

  it('parses Retry-After as seconds or as an HTTP-date', async () => {
    const clock = fakeClock(Date.parse('2025-11-24T03:00:00Z'));
    const { fetch } = fakeFetch(
      () => Response.json({ error: 'temporarily_unavailable', error_description: 'retry later' }, { status: 503, headers: { 'retry-after': '7' } }),
      () => Response.json({ error: 'slow_down' }, { status: 429, headers: { 'retry-after': 'Mon, 24 Nov 2025 03:00:30 GMT' } }),
    );
    const tvc = client({ fetch, now: clock.now });

    const seconds = await caught(tvc.getToken({ audience: ORDERS }));
    const date = await caught(tvc.getToken({ audience: ORDERS }));

    expect(seconds).toMatchObject({ status: 503, code: 'temporarily_unavailable', retryAfterSeconds: 7 });
    expect(date).toMatchObject({ status: 429, code: 'slow_down', retryAfterSeconds: 30 });
  });

  it('a non-OAuth error body -> http_error with the status', async () => {
    const { fetch } = fakeFetch(() => new Response('<html>Bad Gateway</html>', { status: 502, headers: { 'content-type': 'text/html' } }));
    const tvc = client({ fetch });

    const error = await caught(tvc.getToken({ audience: ORDERS }));

    expect(error).toMatchObject({ status: 502, code: ClientErrorCode.httpError });
  });

  it.each([
    ['not JSON', 'access_token=leaky-token'],
    ['wrong token_type', JSON.stringify({ access_token: 'leaky-token', token_type: 'mac', expires_in: 3600 })],
    ['no expires_in', JSON.stringify({ access_token: 'leaky-token', token_type: 'Bearer' })],
    ['fractional expires_in', JSON.stringify({ access_token: 'leaky-token', token_type: 'Bearer', expires_in: 1.5 })],
    ['zero expires_in', JSON.stringify({ access_token: 'leaky-token', token_type: 'Bearer', expires_in: 0 })],
    ['no access_token', JSON.stringify({ token_type: 'Bearer', expires_in: 3600 })],
  ])('an invalid 2xx body (%s) -> invalid_response, never quoting the token', async (_case, body) => {
    const { fetch } = fakeFetch(() => new Response(body, { status: 200, headers: { 'content-type': 'application/json' } }));
    const tvc = client({ fetch });

    const error = await caught(tvc.getToken({ audience: ORDERS }));

    expect(error.code).toBe(ClientErrorCode.invalidResponse);
    expect(error.message).not.toContain('leaky-token');
    expect(String(error.stack)).not.toContain('leaky-token');
  });

  it('no response -> network_error; no answer within timeoutMs -> timeout', async () => {
    const { fetch: refused } = fakeFetch(() => Promise.reject(new TypeError('fetch failed')));
    const { fetch: hanging } = fakeFetch(
      (call) =>
        new Promise<Response>((_resolve, reject) => {
          call.init.signal?.addEventListener('abort', () => reject(call.init.signal?.reason));
        }),
    );

    const network = await caught(client({ fetch: refused }).getToken({ audience: ORDERS }));
    const timeout = await caught(client({ fetch: hanging, timeoutMs: 20 }).getToken({ audience: ORDERS }));

    expect(network).toMatchObject({ status: 0, code: ClientErrorCode.networkError });
    expect(network.cause).toBeInstanceOf(TypeError);
    expect(timeout).toMatchObject({ status: 0, code: ClientErrorCode.timeout });
  });

  it('credentials that cannot be resolved -> credentials_unavailable, and fetch is not called', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('never'));
    const tvc = client({ fetch, credentials: () => Promise.reject(new Error('Could not load credentials from any providers')) });

    const error = await caught(tvc.getToken({ audience: ORDERS }));

    expect(error).toMatchObject({ status: 0, code: ClientErrorCode.credentialsUnavailable });
    expect(calls).toHaveLength(0);
  });

  it('rejects an empty audience and a bad endpoint before any request', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('never'));

    await expect(client({ fetch }).getToken({ audience: ' ' })).rejects.toThrow(TypeError);
    expect(() => client({ endpoint: 'ftp://example.com/prod' })).toThrow(TypeError);
    expect(() => client({ endpoint: `${ENDPOINT}?stage=prod` })).toThrow(TypeError);
    expect(calls).toHaveLength(0);
  });
});

describe('TokenVendorClient: an Auth0 organization (issue 12)', () => {
  const ACME = 'org_W0pZ5hnWr4BCGg8a';
  const GLOBEX = 'globex';

  it('sends organization in the API body, exactly as named, with a proof bound to it', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-acme'));

    await client({ fetch }).getToken({ audience: ORDERS, scope: 'write:orders read:orders', organization: ACME });

    expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ audience: ORDERS, scope: 'read:orders write:orders', organization: ACME });
    const proof = headersOf(calls[0]!)['x-token-vendor-proof'] ?? '';
    expect(provesFor(proof, ORDERS, 'read:orders write:orders', SERVER_ID, ACME)).toBe(true);
    // Made for that organization only: not for none, another organization or another case.
    expect(provesFor(proof, ORDERS, 'read:orders write:orders')).toBe(false);
    expect(provesFor(proof, ORDERS, 'read:orders write:orders', SERVER_ID, GLOBEX)).toBe(false);
    expect(provesFor(proof, ORDERS, 'read:orders write:orders', SERVER_ID, ACME.toUpperCase())).toBe(false);
  });

  it('sends organization in the direct-invocation event, with a proof bound to it', async () => {
    const { fetch, calls } = fakeFetch(() => Response.json(tokenBody('tok-direct-acme')));

    await direct({ fetch }).getToken({ audience: ORDERS, organization: ACME });

    const event = JSON.parse(String(calls[0]!.init.body)) as Record<string, string>;
    expect(Object.keys(event).sort()).toEqual(['audience', 'organization', 'proof']);
    expect(event.organization).toBe(ACME);
    expect(provesFor(event.proof ?? '', ORDERS, undefined, SERVER_ID, ACME)).toBe(true);
    expect(provesFor(event.proof ?? '', ORDERS, undefined)).toBe(false);
  });

  it('keeps organizations apart in the cache: each organization and none is its own token', async () => {
    const { fetch, calls } = fakeFetch(
      () => tokenResponse('tok-acme'),
      () => tokenResponse('tok-globex'),
      () => tokenResponse('tok-none'),
    );
    const tvc = client({ fetch });

    const acme = await tvc.getToken({ audience: ORDERS, scope: 'read:orders', organization: ACME });
    const globex = await tvc.getToken({ audience: ORDERS, scope: 'read:orders', organization: GLOBEX });
    const none = await tvc.getToken({ audience: ORDERS, scope: 'read:orders' });
    const acmeAgain = await tvc.getToken({ audience: ORDERS, scope: ' read:orders', organization: ACME });
    const noneAgain = await tvc.getToken({ audience: ORDERS, scope: 'read:orders', organization: undefined });

    expect([acme, globex, none, acmeAgain, noneAgain].map((t) => t.accessToken)).toEqual(['tok-acme', 'tok-globex', 'tok-none', 'tok-acme', 'tok-none']);
    expect(calls).toHaveLength(3);
    expect(calls.map((call) => (JSON.parse(String(call.init.body)) as { organization?: string }).organization)).toEqual([ACME, GLOBEX, undefined]);
  });

  it('keeps organizations apart in the single flight: concurrent calls for two organizations make two requests', async () => {
    const gates = [deferred<Response>(), deferred<Response>()];
    const { fetch, calls } = fakeFetch(
      () => gates[0]!.promise,
      () => gates[1]!.promise,
    );
    const tvc = client({ fetch });

    const pending = [ACME, GLOBEX, ACME, GLOBEX].map((organization) => tvc.getToken({ audience: ORDERS, organization }));
    await new Promise((r) => setTimeout(r, 10)); // let the signer finish and both fetches start
    const first = (JSON.parse(String(calls[0]!.init.body)) as { organization: string }).organization;
    gates[0]!.resolve(tokenResponse(`tok-${first}`));
    gates[1]!.resolve(tokenResponse(`tok-${first === ACME ? GLOBEX : ACME}`));
    const tokens = await Promise.all(pending);

    expect(calls).toHaveLength(2);
    expect(tokens.map((t) => t.accessToken)).toEqual([`tok-${ACME}`, `tok-${GLOBEX}`, `tok-${ACME}`, `tok-${GLOBEX}`]);
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['101 characters', 'o'.repeat(101)],
    ['a newline', 'acme\nglobex'],
    ['a tab', 'acme\t'],
    ['DEL', 'acme\u007f'],
    ['a C1 control (NEL)', 'acme\u0085'],
    ['not a string', 42 as unknown as string],
  ])('refuses an organization that is %s with a TypeError, before any request', async (_case, organization) => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('never'));

    await expect(client({ fetch }).getToken({ audience: ORDERS, organization })).rejects.toThrow(TypeError);
    expect(calls).toHaveLength(0);
  });

  it('takes an organization of exactly 100 characters', async () => {
    const { fetch, calls } = fakeFetch(() => tokenResponse('tok-long'));

    await client({ fetch }).getToken({ audience: ORDERS, organization: 'o'.repeat(100) });

    expect((JSON.parse(String(calls[0]!.init.body)) as { organization: string }).organization).toHaveLength(100);
  });

  it('binds \\n<organization> after the scope: a fixed vector, the same as the vendor\'s binding', () => {
    // Known answers from coreutils:
    //   printf 'tvp1\nhttps://orders.example.com\nread:orders write:orders\norg_W0pZ5hnWr4BCGg8a' | sha256sum
    //   printf 'tvp1\nhttps://orders.example.com\n\nacme-corp' | sha256sum
    const withScope = '23ca7bc7ed70eac1a3331281c65e3593738deb16bf0b84b7fc18b9e2d60a7171';
    const withoutScope = '0562d3f62f70ded3c5ed9f3f56af508ab3719736ea4bed0834f121df929d1b2f';

    expect(requestBindingHash(ORDERS, 'write:orders read:orders write:orders', ACME)).toBe(withScope);
    expect(requestBindingHash(ORDERS, undefined, 'acme-corp')).toBe(withoutScope);
    expect(vendorRequestBinding(ORDERS, 'write:orders read:orders', ACME)).toBe(withScope);
    expect(vendorRequestBinding(ORDERS, undefined, 'acme-corp')).toBe(withoutScope);
    // Without an organization, exactly the binding of before (the known answer of the test above).
    expect(requestBindingHash(ORDERS, undefined, undefined)).toBe('cfb689387f9bd1f3ec6978de096f75e385b244ce793709123f68008dfad3f8f0');
  });
});

describe('TokenVendorClient: round trip through the local gateway', () => {
  it('the signature is accepted and the handler sees the caller and the request', async () => {
    const events: APIGatewayProxyEvent[] = [];
    const gateway = await startLocalGateway({
      region: 'eu-west-1',
      stage: 'local',
      credentials: [{ ...CREDENTIALS, principalArn: 'arn:aws:iam::123456789012:role/teams/orders/orders-api', sessionName: 'orders-api' }],
      handler: async (event) => {
        events.push(event);
        return {
          statusCode: 200,
          headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
          body: JSON.stringify({ access_token: 'tok-from-gateway', token_type: 'Bearer', expires_in: 1800, scope: 'orders:read' }),
        };
      },
    });
    try {
      const tvc = new TokenVendorClient({ endpoint: gateway.url, region: REGION, serverId: SERVER_ID, credentials: CREDENTIALS });

      const token = await tvc.getToken({ audience: ORDERS, scope: 'orders:read' });
      const again = await tvc.getToken({ audience: ORDERS, scope: 'orders:read' });

      expect(token.accessToken).toBe('tok-from-gateway');
      expect(token.expiresAt).toBeGreaterThan(Date.now() + 1_700_000);
      expect(again).toBe(token);
      expect(events).toHaveLength(1);
      expect(events[0]?.requestContext.identity.userArn).toBe('arn:aws:sts::123456789012:assumed-role/orders-api/orders-api');
      expect(JSON.parse(events[0]?.body ?? '')).toEqual({ audience: ORDERS, scope: 'orders:read' });
      // The proof arrives as API Gateway passes headers on, and is one for this request.
      const proof = events[0]?.headers['X-Token-Vendor-Proof'] ?? events[0]?.headers['x-token-vendor-proof'];
      expect(provesFor(String(proof), ORDERS, 'orders:read')).toBe(true);
    } finally {
      await gateway.close();
    }
  });

  it('a key the gateway does not know -> TokenVendorError 403 access_denied', async () => {
    const gateway = await startLocalGateway({ region: 'eu-west-1', stage: 'local', credentials: [], handler: async () => ({ statusCode: 200, body: '' }) });
    try {
      const tvc = new TokenVendorClient({ endpoint: gateway.url, region: REGION, serverId: SERVER_ID, credentials: CREDENTIALS });

      const error = await caught(tvc.getToken({ audience: ORDERS }));

      expect(error).toMatchObject({ status: 403, code: 'access_denied' });
    } finally {
      await gateway.close();
    }
  });
});
