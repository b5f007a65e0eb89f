import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { IdpRejectedError, IdpUnavailableError } from '../../functions/core/errors.js';
import type { VendRequest } from '../../functions/core/tokenService.js';
import { createVendHandler } from '../../functions/http/vendHandler.js';
import { apiEvent, type EventOptions } from '../helpers/events.js';
import { fakeIdentity, fakeProof } from '../helpers/fakeIdentity.js';

const CHECKOUT = 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0123456789abcdef0';
/** An API event whose proof the fake verifier accepts for the event's signer. */
const proven = (opts: EventOptions = {}) => apiEvent({ ...opts, headers: { 'X-Token-Vendor-Proof': fakeProof(CHECKOUT), ...opts.headers } });

function setup(fail?: Error) {
  const calls: VendRequest[] = [];
  const service = {
    async vend(req: VendRequest) {
      calls.push(req);
      if (fail) throw fail;
      return { access_token: 'eyJ.test.token', token_type: 'Bearer' as const, expires_in: 3599, scope: 'read:orders' };
    },
  };
  const identity = fakeIdentity();
  const handler = createVendHandler({ service, identity, logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'Test', serviceName: 'test' }) });
  const http = async (opts?: EventOptions) => (await handler(proven(opts))) as APIGatewayProxyResult;
  return { calls, handler, http, identity };
}

const body = (r: APIGatewayProxyResult) => JSON.parse(r.body) as Record<string, unknown>;

describe('vend handler (API Gateway)', () => {
  it('vends to an assumed-role caller, matched as its role, with no-store', async () => {
    const { calls, http } = setup();
    const res = await http({ body: JSON.stringify({ audience: 'https://orders.example.com', scope: 'read:orders' }) });
    expect(res.statusCode).toBe(200);
    expect(res.headers?.['Cache-Control']).toBe('no-store');
    expect(body(res)).toEqual({ access_token: 'eyJ.test.token', token_type: 'Bearer', expires_in: 3599, scope: 'read:orders' });
    expect(calls[0]).toMatchObject({ audience: 'https://orders.example.com', scope: 'read:orders', caller: { kind: 'iam', type: 'role', name: 'checkout-service', arn: 'arn:aws:iam::111122223333:role/checkout-service', channel: 'api' } });
  });

  it('decodes base64 bodies', async () => {
    const { calls, http } = setup();
    const res = await http({ body: Buffer.from(JSON.stringify({ audience: 'https://a' })).toString('base64'), isBase64Encoded: true });
    expect(res.statusCode).toBe(200);
    expect(calls[0]?.audience).toBe('https://a');
  });

  it.each([
    ['no identity proof', { headers: { 'X-Token-Vendor-Proof': '' } }, 403, 'access_denied'],
    ['no identity at all', { userArn: null, headers: { 'X-Token-Vendor-Proof': '' } }, 403, 'access_denied'],
    ['a root identity', { userArn: null, headers: { 'X-Token-Vendor-Proof': fakeProof('arn:aws:iam::111122223333:root') } }, 403, 'access_denied'],
    ['malformed JSON', { body: '{"audience":' }, 400, 'invalid_request'],
    ['a JSON array', { body: '[]' }, 400, 'invalid_request'],
    ['no body', { body: null }, 400, 'invalid_request'],
    ['missing audience', { body: '{"scope":"a"}' }, 400, 'invalid_request'],
    ['a numeric audience', { body: '{"audience":42}' }, 400, 'invalid_request'],
    ['a non-string scope', { body: '{"audience":"a","scope":["x"]}' }, 400, 'invalid_request'],
    ['an unknown field', { body: '{"audience":"a","client_secret":"x"}' }, 400, 'invalid_request'],
    ['an oversized body', { body: JSON.stringify({ audience: 'a'.repeat(5000) }) }, 400, 'invalid_request'],
    ['an oversized base64 body', { body: Buffer.from('x'.repeat(5000)).toString('base64'), isBase64Encoded: true }, 400, 'invalid_request'],
    ['bad base64', { body: '***', isBase64Encoded: true }, 400, 'invalid_request'],
    ['a form body', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }, 400, 'invalid_request'],
    ['an unknown path', { path: '/admin' }, 404, 'not_found'],
    ['a GET', { method: 'GET' }, 405, 'method_not_allowed'],
  ])('answers %s with an OAuth error body', async (_name, opts, status, code) => {
    const { calls, http } = setup();
    const res = await http(opts);
    expect(res.statusCode).toBe(status);
    expect(body(res)).toMatchObject({ error: code, error_description: expect.any(String) });
    expect(calls).toHaveLength(0);
  });

  it('sends Allow on 405', async () => {
    const res = await setup().http({ method: 'DELETE' });
    expect(res.headers?.Allow).toBe('POST');
  });

  it('carries the IdP error code on 502 without its description', async () => {
    const res = await setup(new IdpRejectedError('invalid_client', 401, 'token endpoint answered 401: invalid_client (Unauthorized secret xyz)')).http();
    expect(res.statusCode).toBe(502);
    expect(body(res).error).toBe('invalid_client');
    expect(res.body).not.toContain('xyz');
  });

  it('answers 503 with Retry-After when the IdP is unreachable', async () => {
    const res = await setup(new IdpUnavailableError('connect ECONNREFUSED 127.0.0.1:1', 7)).http();
    expect(res.statusCode).toBe(503);
    expect(res.headers?.['Retry-After']).toBe('7');
    expect(body(res).error).toBe('temporarily_unavailable');
    expect(res.body).not.toContain('ECONNREFUSED');
  });

  it('trusts no identity it did not verify: a forged userArn without a proof is refused before the service', async () => {
    const { calls, http } = setup();
    const res = await http({ headers: { 'X-Token-Vendor-Proof': '' }, userArn: 'arn:aws:sts::111122223333:assumed-role/admin/forged' });
    expect(res.statusCode).toBe(403);
    expect(body(res)).toMatchObject({ error: 'access_denied' });
    expect(calls).toHaveLength(0);
  });

  it('refuses a proof made by another principal than the one API Gateway verified', async () => {
    const { calls, http } = setup();
    const res = await http({ userArn: 'arn:aws:sts::111122223333:assumed-role/billing-api/task-9' });
    expect(res.statusCode).toBe(403);
    expect(body(res).error_description).toContain('another principal');
    expect(calls).toHaveLength(0);
  });

  it('verifies the proof for the request it came with (audience and scope)', async () => {
    const { identity, http } = setup();
    await http({ body: JSON.stringify({ audience: 'https://orders.example.com', scope: 'write:orders read:orders' }) });
    expect(identity.calls).toEqual([{ audience: 'https://orders.example.com', scope: 'write:orders read:orders' }]);
  });

  it('hides an unexpected error behind a generic 500', async () => {
    const res = await setup(new TypeError('cannot read properties of undefined (secret stuff)')).http();
    expect(res.statusCode).toBe(500);
    expect(body(res)).toEqual({ error: 'server_error', error_description: 'Internal error.' });
  });
});

describe('vend handler (direct invocation)', () => {
  it('returns the same body as the API, to the principal its proof proves', async () => {
    const { calls, handler } = setup();
    const out = await handler({ audience: 'https://orders.example.com', scope: 'read:orders', proof: fakeProof('arn:aws:sts::111122223333:assumed-role/reporting-daily/job-1') });
    expect(out).toEqual({ access_token: 'eyJ.test.token', token_type: 'Bearer', expires_in: 3599, scope: 'read:orders' });
    expect(calls[0]?.caller).toMatchObject({ arn: 'arn:aws:iam::111122223333:role/reporting-daily', channel: 'direct' });
  });

  it('answers a direct invocation without a proof 403, with the status in the body, and never calls the service', async () => {
    const { calls, handler } = setup();
    expect(await handler({ audience: 'https://orders.example.com' })).toMatchObject({ error: 'access_denied', status: 403 });
    expect(calls).toHaveLength(0);
  });

  it("gives a forged API Gateway event no token: the event's userArn is not an identity", async () => {
    const { calls, handler } = setup();
    const forged = apiEvent({ userArn: 'arn:aws:sts::111122223333:assumed-role/admin/forged' });
    expect(((await handler(forged)) as APIGatewayProxyResult).statusCode).toBe(403);
    expect(calls).toHaveLength(0);
  });

  it.each([[null], ['a string'], [{}], [{ audience: 'a', extra: 1 }]])('returns an OAuth error body for %j', async (event) => {
    const { calls, handler } = setup();
    expect(await handler(event)).toMatchObject({ error: 'invalid_request' });
    expect(calls).toHaveLength(0);
  });
});

describe('vend handler metrics', () => {
  /** A Metrics stand-in that records each single metric's dimensions and name. */
  function recordingMetrics() {
    const singles: Array<{ dimensions: Record<string, string>; name?: string }> = [];
    const metrics = {
      addMetric() {},
      publishStoredMetrics() {},
      captureColdStartMetric() {},
      singleMetric() {
        const single: { dimensions: Record<string, string>; name?: string } = { dimensions: {} };
        singles.push(single);
        return {
          addDimension: (name: string, value: string) => void (single.dimensions[name] = value),
          addMetric: (name: string) => void (single.name = name),
        };
      },
    };
    return { metrics: metrics as unknown as Metrics, singles };
  }

  it.each([
    ['a token', undefined, 200, 'OK'],
    ['an IdP refusal', new IdpRejectedError('invalid_client', 401, 'refused'), 502, 'ERR_IDP_REJECTED'],
    ['the IdP unavailable', new IdpUnavailableError('down', 5), 503, 'ERR_IDP_UNAVAILABLE'],
    ['a bug', new TypeError('boom'), 500, 'ERR_UNEXPECTED'],
  ])('counts %s as a Response by status class, and a failure by its internal code too', async (_what, fail, status, code) => {
    const { metrics, singles } = recordingMetrics();
    const service = {
      async vend() {
        if (fail) throw fail;
        return { access_token: 'eyJ.test.token', token_type: 'Bearer' as const, expires_in: 3599, scope: 'read:orders' };
      },
    };
    const handler = createVendHandler({ service, identity: fakeIdentity(), logger: new Logger({ logLevel: 'SILENT' }), metrics });

    const res = (await handler(proven({ body: JSON.stringify({ audience: 'https://a' }) }))) as APIGatewayProxyResult;

    expect(res.statusCode).toBe(status);
    const expected = code === 'OK' ? [{ status: '2xx' }] : [{ status: `${String(status)[0]}xx` }, { code }];
    expect(singles.filter((s) => s.name === 'Response').map((s) => s.dimensions)).toEqual(expected);
  });

  it('a 503 on the wire still tells a rate limit from a quota trip by its code', async () => {
    const { IdpRateLimitedError, QuotaGuardError } = await import('../../functions/core/errors.js');
    for (const [error, code] of [[new IdpRateLimitedError('429', 30), 'ERR_IDP_RATE_LIMITED'], [new QuotaGuardError('cap', 60), 'ERR_QUOTA_GUARD']] as const) {
      const { metrics, singles } = recordingMetrics();
      const handler = createVendHandler({ service: { vend: () => Promise.reject(error) }, identity: fakeIdentity(), logger: new Logger({ logLevel: 'SILENT' }), metrics });
      const res = (await handler(proven({ body: JSON.stringify({ audience: 'https://a' }) }))) as APIGatewayProxyResult;
      expect(JSON.parse(res.body)).toMatchObject({ error: 'temporarily_unavailable' });
      expect(singles.find((s) => s.dimensions.code !== undefined)?.dimensions.code).toBe(code);
    }
  });
});
