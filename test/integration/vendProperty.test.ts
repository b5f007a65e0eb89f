/**
 * Property: whatever arrives — any method, path, identity, body, encoding, or a direct
 * invocation of any shape — the vend handler answers, never with a 5xx, never by throwing.
 * Run against the real local stack, so well-formed requests really reach the IdP.
 */
import type { APIGatewayProxyResult } from 'aws-lambda';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Vendor } from '../../functions/vendor.js';
import { apiEvent, directEvent } from '../helpers/events.js';
import { BILLING, BILLING_ROLE_SESSION, CHECKOUT_ROLE_SESSION, ORDERS, REPORTING_ROLE_SESSION, startTestStack, type TestStack } from '../helpers/testStack.js';

let stack: TestStack;
let vendor: Vendor;
let granted = 0;
beforeAll(async () => {
  stack = await startTestStack();
  vendor = stack.vendor();
});
afterAll(async () => {
  await stack?.close();
});

const scopeWords = fc.constantFrom('read:orders', 'write:orders', 'admin:orders', 'read:billing', '', ' ', 'a\tb', '"', 'read:orders\u0000');
const scope = fc.oneof(fc.array(scopeWords, { maxLength: 4 }).map((w) => w.join(' ')), fc.string(), fc.integer(), fc.constant(null), fc.array(fc.string()));
const audience = fc.oneof(fc.constantFrom(ORDERS, BILLING, '', ' ', 'https://unknown'), fc.string(), fc.integer(), fc.constant(null), fc.string({ minLength: 590, maxLength: 700 }));
const bodyObject = fc.record(
  { audience, scope, client_secret: fc.string(), extra: fc.anything() },
  { requiredKeys: [] },
);
// Well-formed requests, often enough that many of them are granted and reach the IdP.
const wellFormed = fc.record(
  { audience: fc.constantFrom(ORDERS, BILLING), scope: fc.option(fc.subarray(['read:orders', 'write:orders', 'admin:orders', 'read:billing']).map((w) => w.join(' ')), { nil: undefined }) },
  { requiredKeys: ['audience'] },
);
const rawBody = fc.oneof(
  { arbitrary: wellFormed.map((o) => JSON.stringify(o)), weight: 4 },
  bodyObject.map((o) => JSON.stringify(o)),
  fc.string(),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.constant(null),
  fc.string({ minLength: 4000, maxLength: 9000 }),
);
const userArn = fc.oneof(
  { arbitrary: fc.constantFrom(CHECKOUT_ROLE_SESSION, REPORTING_ROLE_SESSION, BILLING_ROLE_SESSION), weight: 4 },
  fc.constantFrom(null, '', 'arn:aws:iam::111122223333:root', 'arn:aws:iam::111122223333:user/ops/alice'),
  fc.string(),
);

describe('vend handler, any input', () => {
  it('never answers 5xx or throws for any API Gateway event', async () => {
    await fc.assert(
      fc.asyncProperty(
        rawBody,
        fc.boolean(),
        userArn,
        fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE', 'OPTIONS'),
        fc.constantFrom('/token', '/token', '/token', '/token', '/', '/token/', '/admin', '/TOKEN'),
        fc.constantFrom('application/json', 'application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded'),
        async (body, base64, arn, method, path, contentType) => {
          const event = apiEvent({
            body: base64 && body !== null ? Buffer.from(body).toString('base64') : body,
            isBase64Encoded: base64,
            userArn: arn,
            method,
            path,
            headers: { 'Content-Type': contentType },
          });
          const res = (await vendor.handler(event)) as APIGatewayProxyResult;
          expect(res.statusCode).toBeLessThan(500);
          const doc = JSON.parse(res.body) as Record<string, unknown>;
          if (res.statusCode === 200) {
            granted += 1;
            expect(doc).toMatchObject({ access_token: expect.any(String), token_type: 'Bearer' });
          } else expect(doc).toEqual({ error: expect.any(String), error_description: expect.any(String) });
        },
      ),
      { numRuns: 400 },
    );
  });

  it('never fails or throws for any direct invocation', async () => {
    // A well-formed request proven by one of the test principals (the reporting role's grant
    // allows direct invocation, the others' do not), or anything at all without a proof.
    const proven = fc
      .tuple(wellFormed, fc.constantFrom(REPORTING_ROLE_SESSION, REPORTING_ROLE_SESSION, CHECKOUT_ROLE_SESSION, BILLING_ROLE_SESSION))
      .map(([body, as]) => directEvent({ audience: body.audience, ...(typeof body.scope === 'string' ? { scope: body.scope } : {}), as }));
    await fc.assert(
      fc.asyncProperty(fc.oneof({ arbitrary: proven, weight: 4 }, wellFormed, bodyObject, fc.anything()), async (event) => {
        const out = (await vendor.handler(event)) as unknown as Record<string, unknown>;
        if ('error' in out) expect(['invalid_request', 'access_denied']).toContain(out.error);
        else {
          granted += 1;
          expect(out).toMatchObject({ access_token: expect.any(String), token_type: 'Bearer' });
        }
      }),
      { numRuns: 400 },
    );
  });

  it('the properties above did reach the IdP (they are not only testing refusals)', () => {
    expect(granted).toBeGreaterThanOrEqual(20);
    expect(stack.tenant.issued().length).toBeGreaterThan(0);
  });
});
