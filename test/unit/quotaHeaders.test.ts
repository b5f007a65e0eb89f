/**
 * Auth0's M2M quota headers (docs/auth0-wire-behaviour.md §9): the parser, and the token
 * endpoint adapter reading them on every answer — a 200 carries the tightest bucket as
 * `IssuedToken.quota`, a 429's used-up bucket sets the Retry-After, through the same parser.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Auth0TokenEndpoint, retryAfterSeconds } from '../../functions/adapters/auth0TokenEndpoint.js';
import {
  describeQuota,
  parseQuotaHeader,
  quotaExhaustedForSeconds,
  readQuotaHeaders,
  tightestQuota,
} from '../../functions/adapters/quotaHeaders.js';
import { IdpRateLimitedError, IdpRejectedError } from '../../functions/core/errors.js';
import type { TokenFetchRequest } from '../../functions/core/ports.js';

describe('parseQuotaHeader', () => {
  it("reads Auth0's documented example: several buckets, comma-separated (§9)", () => {
    expect(parseQuotaHeader('b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200')).toEqual([
      { bucket: 'per_hour', limit: 10, remaining: 7, resetsInSeconds: 3540 },
      { bucket: 'per_day', limit: 50, remaining: 47, resetsInSeconds: 43200 },
    ]);
  });

  it("reads the form without `b=` that Auth0's SDK tests use (node-auth0 HttpResponseHeadersUtils.test.ts)", () => {
    expect(parseQuotaHeader('per_hour;q=100;r=50;t=3600,per_day;q=1000;r=900;t=86400')).toEqual([
      { bucket: 'per_hour', limit: 100, remaining: 50, resetsInSeconds: 3600 },
      { bucket: 'per_day', limit: 1000, remaining: 900, resetsInSeconds: 86400 },
    ]);
  });

  it('tolerates spaces, key order, upper-case keys, a trailing `;` and unknown keys', () => {
    expect(parseQuotaHeader(' b=per_hour ; t=60 ; R=3 ; q=10 ; x=whatever ; , per_day;q=5;r=5;t=9;')).toEqual([
      { bucket: 'per_hour', limit: 10, remaining: 3, resetsInSeconds: 60 },
      { bucket: 'per_day', limit: 5, remaining: 5, resetsInSeconds: 9 },
    ]);
  });

  it('clamps a negative `r` (enforce: false counts past the quota) to 0', () => {
    expect(parseQuotaHeader('b=per_hour;q=10;r=-4;t=60')).toEqual([{ bucket: 'per_hour', limit: 10, remaining: 0, resetsInSeconds: 60 }]);
  });

  it.each([
    ['nothing', undefined],
    ['null', null],
    ['an empty header', ''],
    ['garbage', 'garbage'],
    ['commas only', ',,,'],
    ['no bucket name', 'q=10;r=7;t=3540'],
    ['a missing r', 'b=per_hour;q=10;t=3540'],
    ['a missing t', 'b=per_hour;q=10;r=7'],
    ['a missing q', 'b=per_hour;r=7;t=3540'],
    ['a non-integer', 'b=per_hour;q=10;r=7.5;t=3540'],
    ['a number past 15 digits', 'b=per_hour;q=10;r=7;t=1234567890123456'],
    ['hex', 'b=per_hour;q=0x10;r=7;t=3540'],
    ['a negative q', 'b=per_hour;q=-1;r=0;t=60'],
    ['a negative t', 'b=per_hour;q=1;r=0;t=-60'],
    ['a duplicated key', 'b=per_hour;q=10;r=7;r=0;t=3540'],
    ['two names', 'per_hour;b=per_day;q=10;r=7;t=3540'],
    ['a bare name after a key', 'q=10;per_hour;r=7;t=3540'],
    ['an empty name', 'b=;q=10;r=7;t=3540'],
    ['a name that is not a token', 'b=per hour;q=10;r=7;t=3540'],
    ['an oversized header', `${'b=per_hour;q=10;r=7;t=3540,'.repeat(200)}`],
  ])('ignores %s', (_label, header) => {
    expect(parseQuotaHeader(header)).toEqual([]);
  });

  it('keeps the well-formed buckets of a header with a malformed one', () => {
    expect(parseQuotaHeader('b=per_hour;q=10;r=oops;t=3540,b=per_day;q=50;r=47;t=43200')).toEqual([
      { bucket: 'per_day', limit: 50, remaining: 47, resetsInSeconds: 43200 },
    ]);
  });

  it('never throws, whatever the header', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (header) => {
        const readings = parseQuotaHeader(header);
        for (const r of readings) {
          expect(Number.isSafeInteger(r.limit) && Number.isSafeInteger(r.remaining) && Number.isSafeInteger(r.resetsInSeconds)).toBe(true);
          expect(r.remaining).toBeGreaterThanOrEqual(0);
        }
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[bqrt]?=?-?\d{0,3};?,?$/), { maxLength: 20 }), (parts) => {
        parseQuotaHeader(parts.join(''));
      }),
    );
  });
});

describe('readQuotaHeaders and tightestQuota', () => {
  it('reads the client and the organisation header apart', () => {
    const quota = readQuotaHeaders(
      new Headers({
        'Auth0-Client-Quota-Limit': 'b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200',
        'Auth0-Organization-Quota-Limit': 'b=per_hour;q=50;r=47;t=3540,b=per_day;q=250;r=247;t=43200',
      }),
    );
    expect(quota.client.map((r) => r.bucket)).toEqual(['per_hour', 'per_day']);
    expect(quota.organization.map((r) => r.remaining)).toEqual([47, 247]);
  });

  it('the tightest bucket is the one with the least remaining, across both headers', () => {
    const both = readQuotaHeaders(
      new Headers({
        'auth0-client-quota-limit': 'b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200',
        'auth0-organization-quota-limit': 'b=per_hour;q=50;r=2;t=3540',
      }),
    );
    expect(tightestQuota(both)).toEqual({ bucket: 'per_hour', limit: 50, remaining: 2, resetsInSeconds: 3540 });

    const clientOnly = readQuotaHeaders(new Headers({ 'auth0-client-quota-limit': 'b=per_day;q=50;r=3;t=43200,b=per_hour;q=10;r=7;t=3540' }));
    expect(tightestQuota(clientOnly)?.bucket).toBe('per_day');
  });

  it('on a tie, the bucket that resets last is the tightest (it refuses for longer)', () => {
    const quota = readQuotaHeaders(new Headers({ 'auth0-client-quota-limit': 'b=per_hour;q=10;r=0;t=1200,b=per_day;q=50;r=0;t=43200' }));
    expect(tightestQuota(quota)?.bucket).toBe('per_day');
    expect(quotaExhaustedForSeconds(quota)).toBe(43200);
  });

  it('no header, or only malformed ones, means no quota: never zero', () => {
    expect(tightestQuota(readQuotaHeaders(new Headers()))).toBeUndefined();
    expect(tightestQuota(readQuotaHeaders(new Headers({ 'auth0-client-quota-limit': 'garbage' })))).toBeUndefined();
    expect(quotaExhaustedForSeconds(readQuotaHeaders(new Headers({ 'auth0-client-quota-limit': 'b=per_hour;q=10;r=7;t=3540' })))).toBeUndefined();
  });

  it('describes a reading for the log', () => {
    expect(describeQuota({ bucket: 'per_hour', limit: 10, remaining: 0, resetsInSeconds: 1200 })).toBe('per_hour 0/10 left, resets in 1200 s');
  });
});

describe('retryAfterSeconds uses the same parser', () => {
  const now = Date.UTC(2026, 0, 1);

  it("a used-up bucket's `t`, from either header, with or without `b=`", () => {
    expect(retryAfterSeconds(new Headers({ 'auth0-client-quota-limit': 'b=per_hour;q=10;r=0;t=1200' }), now)).toBe(1200);
    expect(retryAfterSeconds(new Headers({ 'auth0-client-quota-limit': 'per_hour;q=10;r=0;t=1200' }), now)).toBe(1200);
    expect(retryAfterSeconds(new Headers({ 'auth0-organization-quota-limit': 'b=per_hour;q=50;r=0;t=900' }), now)).toBe(900);
    // Only a used-up bucket is a reason to wait.
    expect(retryAfterSeconds(new Headers({ 'auth0-client-quota-limit': 'b=per_hour;q=10;r=3;t=1200' }), now)).toBeUndefined();
  });

  it('the longest of Retry-After, X-RateLimit-Reset and the quota, capped at an hour; a malformed quota header is ignored', () => {
    const headers = new Headers({
      'retry-after': '30',
      'x-ratelimit-reset': String(now / 1000 + 60),
      'auth0-client-quota-limit': 'b=per_hour;q=10;r=0;t=1200,b=per_day;q=50;r=0;t=43200',
    });
    expect(retryAfterSeconds(headers, now)).toBe(3600);
    expect(retryAfterSeconds(new Headers({ 'retry-after': '30', 'auth0-client-quota-limit': 'b=per_hour;r=0;t=oops' }), now)).toBe(30);
  });
});

describe('the token endpoint reads the quota on every answer', () => {
  const origin = 'https://tenant.example.auth0.com';
  const request: TokenFetchRequest = {
    client: { name: 'orders', origin, issuer: `${origin}/`, secretId: 'orders-secret', authMethod: 'client_secret_post', tokenFormat: 'opaque' },
    credentials: { kind: 'secret', clientId: 'client-id', clientSecret: 'not-a-secret' },
    audience: 'https://orders.example',
    scopes: ['read:orders'],
  };
  const endpointAnswering = (response: () => Response) => {
    const sent: Headers[] = [];
    const endpoint = new Auth0TokenEndpoint({
      timeoutMs: 1000,
      now: () => Date.UTC(2026, 0, 1),
      fetch: async (_input, init) => {
        sent.push(new Headers(init?.headers));
        return response();
      },
    });
    return { endpoint, sent };
  };
  const token = { access_token: 'opaque-token', token_type: 'Bearer', expires_in: 86400, scope: 'read:orders' };

  it('a 200 carries the tightest bucket as IssuedToken.quota, and the request asked for identity', async () => {
    const { endpoint, sent } = endpointAnswering(
      () =>
        new Response(JSON.stringify(token), {
          headers: {
            'content-type': 'application/json',
            'auth0-client-quota-limit': 'b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200',
          },
        }),
    );
    const issued = await endpoint.fetchToken(request);
    expect(issued.quota).toEqual({ bucket: 'per_hour', limit: 10, remaining: 7, resetsInSeconds: 3540 });
    expect(sent[0]?.get('accept-encoding')).toBe('identity');
  });

  it('a 200 without the header, or with a malformed one, has no quota and is served all the same', async () => {
    for (const headers of [{}, { 'auth0-client-quota-limit': 'b=per_hour;q=ten' }] as Record<string, string>[]) {
      const { endpoint } = endpointAnswering(() => new Response(JSON.stringify(token), { headers }));
      const issued = await endpoint.fetchToken(request);
      expect(issued.accessToken).toBe('opaque-token');
      expect(issued.quota).toBeUndefined();
    }
  });

  it("a quota 429 waits until the used-up bucket resets, and says which bucket in the log's message", async () => {
    const { endpoint } = endpointAnswering(
      () =>
        new Response(JSON.stringify({ error: 'too_many_requests', error_description: 'Client quota exceeded' }), {
          status: 429,
          headers: { 'auth0-client-quota-limit': 'b=per_hour;q=10;r=0;t=1200' },
        }),
    );
    const error = await endpoint.fetchToken(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdpRateLimitedError);
    expect((error as IdpRateLimitedError).retryAfterSeconds).toBe(1200);
    expect((error as Error).message).toContain('client quota per_hour 0/10 left, resets in 1200 s');
  });

  it('a compressed error body is not read, and the status and headers still decide', async () => {
    const gzipped = { 'content-encoding': 'gzip' };
    const limited = endpointAnswering(() => new Response('\x1f\x8b…', { status: 429, headers: { ...gzipped, 'retry-after': '42' } }));
    const error = await limited.endpoint.fetchToken(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdpRateLimitedError);
    expect((error as IdpRateLimitedError).retryAfterSeconds).toBe(42);
    expect((error as Error).message).toMatch(/body not read: .*Content-Encoding "gzip"/);

    const refused = endpointAnswering(() => new Response('\x1f\x8b…', { status: 401, headers: gzipped }));
    const rejection = await refused.endpoint.fetchToken(request).catch((e: unknown) => e);
    expect(rejection).toBeInstanceOf(IdpRejectedError);
    expect(rejection).toMatchObject({ idpStatus: 401, idpError: 'invalid_response' });
  });
});
