import type { APIGatewayProxyEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { ClientErrorCode, TokenVendorClient, TokenVendorError, type TokenVendorClientOptions } from '../../client/index.js';
import { startLocalGateway } from '../../local/gateway.js';

const ENDPOINT = 'https://abc123.execute-api.eu-west-1.amazonaws.com/prod';
const CREDENTIALS = { accessKeyId: 'AKIAORDERSAPI0000001', secretAccessKey: 'orders-api-secret-key' };
const ORDERS = 'https://orders.example.com';

interface FetchCall {
  url: string;
  init: RequestInit;
}

/** A fetch that records calls and answers from a queue of responders (the last one repeats). */
function fakeFetch(...responders: Array<(call: FetchCall) => Promise<Response> | Response>) {
  const calls: FetchCall[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const call = { url: String(input), init: init ?? {} };
    calls.push(call);
    const responder = responders[Math.min(calls.length - 1, responders.length - 1)];
    if (responder === undefined) throw new Error('no responder');
    return responder(call);
  }) as typeof fetch;
  return { fetch: fetchImpl, calls };
}

function tokenResponse(accessToken: string, expiresIn = 3600, scope?: string): Response {
  return Response.json({ access_token: accessToken, token_type: 'Bearer', expires_in: expiresIn, ...(scope === undefined ? {} : { scope }) }, { headers: { 'cache-control': 'no-store' } });
}

/** A clock the test moves by hand. */
function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

function client(overrides: Partial<TokenVendorClientOptions>): TokenVendorClient {
  return new TokenVendorClient({ endpoint: ENDPOINT, region: 'eu-west-1', credentials: CREDENTIALS, ...overrides });
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

async function caught(promise: Promise<unknown>): Promise<TokenVendorError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TokenVendorError);
  return error as TokenVendorError;
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
      /^AWS4-HMAC-SHA256 Credential=AKIAORDERSAPI0000001\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=[0-9a-f]{64}$/,
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
      const tvc = new TokenVendorClient({ endpoint: gateway.url, region: 'eu-west-1', credentials: CREDENTIALS });

      const token = await tvc.getToken({ audience: ORDERS, scope: 'orders:read' });
      const again = await tvc.getToken({ audience: ORDERS, scope: 'orders:read' });

      expect(token.accessToken).toBe('tok-from-gateway');
      expect(token.expiresAt).toBeGreaterThan(Date.now() + 1_700_000);
      expect(again).toBe(token);
      expect(events).toHaveLength(1);
      expect(events[0]?.requestContext.identity.userArn).toBe('arn:aws:sts::123456789012:assumed-role/orders-api/orders-api');
      expect(JSON.parse(events[0]?.body ?? '')).toEqual({ audience: ORDERS, scope: 'orders:read' });
    } finally {
      await gateway.close();
    }
  });

  it('a key the gateway does not know -> TokenVendorError 403 access_denied', async () => {
    const gateway = await startLocalGateway({ region: 'eu-west-1', stage: 'local', credentials: [], handler: async () => ({ statusCode: 200, body: '' }) });
    try {
      const tvc = new TokenVendorClient({ endpoint: gateway.url, region: 'eu-west-1', credentials: CREDENTIALS });

      const error = await caught(tvc.getToken({ audience: ORDERS }));

      expect(error).toMatchObject({ status: 403, code: 'access_denied' });
    } finally {
      await gateway.close();
    }
  });
});
