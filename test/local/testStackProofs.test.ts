/**
 * The test helpers' proofs: a test stack's STS stand-in knows every test caller, and apiEvent() /
 * directEvent() carry proofs it accepts, bound to what the event asks for.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeProof, requestBinding } from '../../local/stsProof.js';
import { PROOF_SIGNER_ENV, apiEvent, directEvent } from '../helpers/events.js';
import { ALICE_USER, CHECKOUT_ROLE_SESSION, DEFAULT_EVENT_SESSION, ORDERS, REPORTING_ROLE_SESSION, TEST_PROOF_SERVER_ID, startTestStack, type TestStack } from '../helpers/testStack.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.close();
});

/** Present a proof to the stack's STS as the vendor would, for (audience, scope). */
async function present(proof: string, audience: string, scope?: string): Promise<{ status: number; arn?: string }> {
  const res = await fetch(decodeProof(proof), {
    headers: { 'x-token-vendor-server-id': stack.env.PROOF_SERVER_ID ?? '', 'x-token-vendor-request': requestBinding(audience, scope), accept: 'application/json' },
  });
  const doc = (await res.json()) as { GetCallerIdentityResponse?: { GetCallerIdentityResult: { Arn: string } } };
  return { status: res.status, ...(doc.GetCallerIdentityResponse ? { arn: doc.GetCallerIdentityResponse.GetCallerIdentityResult.Arn } : {}) };
}

describe('test stack: STS stand-in and proofs', () => {
  it('puts STS_ENDPOINT (its loopback stand-in) and PROOF_SERVER_ID in the env', () => {
    expect(stack.env.STS_ENDPOINT).toBe(stack.sts.origin);
    expect(stack.env.STS_ENDPOINT).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(stack.env.PROOF_SERVER_ID).toBe(TEST_PROOF_SERVER_ID);
  });

  it("apiEvent() carries a proof for its caller, bound to the body's audience and scope", async () => {
    const event = apiEvent({ userArn: CHECKOUT_ROLE_SESSION, body: JSON.stringify({ audience: ORDERS, scope: 'write:orders read:orders' }) });
    const proof = event.headers['X-Token-Vendor-Proof'] ?? '';

    expect(await present(proof, ORDERS, 'read:orders write:orders')).toEqual({ status: 200, arn: CHECKOUT_ROLE_SESSION });
    expect((await present(proof, ORDERS, 'read:orders')).status).toBe(403);
    expect(stack.sts.callsBy(CHECKOUT_ROLE_SESSION)).toBe(1);
  });

  it('the default caller, a base64 body, a user and a direct invocation all get proofs STS accepts', async () => {
    const defaultEvent = apiEvent();
    const base64 = apiEvent({ body: Buffer.from(JSON.stringify({ audience: ORDERS, scope: 'read:orders' })).toString('base64'), isBase64Encoded: true });
    const user = apiEvent({ userArn: ALICE_USER, body: JSON.stringify({ audience: ORDERS }) });
    const direct = directEvent({ audience: ORDERS, scope: 'read:orders', as: REPORTING_ROLE_SESSION });

    expect(await present(defaultEvent.headers['X-Token-Vendor-Proof'] ?? '', ORDERS)).toEqual({ status: 200, arn: DEFAULT_EVENT_SESSION });
    expect(await present(base64.headers['X-Token-Vendor-Proof'] ?? '', ORDERS, 'read:orders')).toEqual({ status: 200, arn: DEFAULT_EVENT_SESSION });
    expect(await present(user.headers['X-Token-Vendor-Proof'] ?? '', ORDERS)).toEqual({ status: 200, arn: ALICE_USER });
    expect(Object.keys(direct)).toEqual(['audience', 'scope', 'proof']);
    expect(await present(direct.proof ?? '', ORDERS, 'read:orders')).toEqual({ status: 200, arn: REPORTING_ROLE_SESSION });
  });

  it('no proof for proof: null, an unknown principal, no caller, or a body without an audience; an explicit proof is sent as is', () => {
    const header = (e: ReturnType<typeof apiEvent>) => e.headers['X-Token-Vendor-Proof'];

    expect(header(apiEvent({ proof: null }))).toBeUndefined();
    expect(header(apiEvent({ userArn: 'arn:aws:sts::111122223333:assumed-role/orders-api/x' }))).toBeUndefined();
    expect(header(apiEvent({ userArn: null }))).toBeUndefined();
    expect(header(apiEvent({ body: '{"scope":"read:orders"}' }))).toBeUndefined();
    expect(header(apiEvent({ proof: 'tvp1.forged' }))).toBe('tvp1.forged');
    expect(directEvent({ audience: ORDERS, proof: null })).toEqual({ audience: ORDERS });
    expect(() => directEvent({ audience: ORDERS, as: 'arn:aws:sts::111122223333:assumed-role/orders-api/x' })).toThrow(/no test stack credential/);
  });

  it('a second stack signs for its own STS while open; closing it hands back to the first, and close() stops its STS', async () => {
    const own = await startTestStack();
    const inner = apiEvent();
    expect(new URL(decodeProof(inner.headers['X-Token-Vendor-Proof'] ?? '')).origin).toBe(own.sts.origin);
    expect(JSON.parse(process.env[PROOF_SIGNER_ENV] ?? '{}').stsOrigin).toBe(own.sts.origin);

    await own.close();

    expect(new URL(decodeProof(apiEvent().headers['X-Token-Vendor-Proof'] ?? '')).origin).toBe(stack.sts.origin);
    expect(JSON.parse(process.env[PROOF_SIGNER_ENV] ?? '{}').stsOrigin).toBe(stack.sts.origin);
    await expect(fetch(`${own.sts.origin}/`)).rejects.toThrow();
  });
});
