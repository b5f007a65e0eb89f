/**
 * The client against the local stand-ins, with the vendor's own proof verifier in the middle: the
 * smithy-built proof is checked by functions/core/identityProof.ts and verified by the local STS
 * (local/sts.ts, which verifies presigned SigV4 against the local credentials, as STS does), on
 * the API path through the local gateway and on the direct path through the local Invoke API.
 * The vend function here is a stub that answers with the principal STS proved: these tests are
 * about the caller's side; the vendor's are under test/integration.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientErrorCode, TokenVendorClient, type TokenVendorCredentials } from '../../client/index.js';
import { StsIdentityVerifier } from '../../functions/adapters/stsIdentityVerifier.js';
import { IdentityProofError } from '../../functions/core/errors.js';
import { startLocalGateway, type LocalCredential, type LocalGateway } from '../../local/gateway.js';
import { startLocalLambdaInvoke, type LocalLambdaInvoke } from '../../local/lambdaInvoke.js';
import { startLocalSts, type LocalSts } from '../../local/sts.js';
import { ORDERS, REGION, SERVER_ID, caught } from './fakes.js';

const LONG_TERM: LocalCredential = {
  accessKeyId: 'AKIACHECKOUT00000001',
  secretAccessKey: 'checkout-secret/with+slash',
  principalArn: 'arn:aws:iam::111122223333:role/checkout-service',
  sessionName: 'i-0abc',
};
const TEMPORARY: LocalCredential = {
  accessKeyId: 'ASIAREPORTING0000001',
  secretAccessKey: 'reporting-secret',
  // A real session token is long and full of + / =, which the proof's query must carry intact.
  sessionToken: `IQoJb3JpZ2luX2VjE+/=${'x'.repeat(800)}`,
  principalArn: 'arn:aws:iam::111122223333:role/reporting-daily',
  sessionName: 'job-1',
};
const STRANGER: LocalCredential = { accessKeyId: 'AKIASTRANGER00000001', secretAccessKey: 'unknown-to-sts', principalArn: 'arn:aws:iam::111122223333:role/stranger' };

function keyOf(c: LocalCredential): TokenVendorCredentials {
  return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, ...(c.sessionToken === undefined ? {} : { sessionToken: c.sessionToken }) };
}

let sts: LocalSts;
let verifier: StsIdentityVerifier;
let gateway: LocalGateway;
let lambda: LocalLambdaInvoke;
const events: APIGatewayProxyEvent[] = [];

/** The vend stub: the token names whom STS proved, for the request in hand. */
async function provenToken(proof: unknown, audience: string, scope: string | undefined) {
  const caller = await verifier.verify(proof, { audience, scope });
  return { access_token: `token-for ${caller.arn}`, token_type: 'Bearer', expires_in: 3600, scope: scope ?? '' };
}

beforeAll(async () => {
  // The STS stand-in knows the two callers; the gateway and Invoke API also know the stranger, so
  // its requests get past SigV4 and only its proof fails.
  sts = await startLocalSts({ credentials: [LONG_TERM, TEMPORARY], region: REGION });
  verifier = new StsIdentityVerifier({ policy: { region: REGION, serverId: SERVER_ID, localStsOrigin: sts.origin }, timeoutMs: 5_000 });
  gateway = await startLocalGateway({
    region: REGION,
    stage: 'local',
    credentials: [LONG_TERM, TEMPORARY, STRANGER],
    handler: async (event) => {
      events.push(event);
      const body = JSON.parse(event.body ?? '{}') as { audience: string; scope?: string };
      const proof = Object.entries(event.headers).find(([name]) => name.toLowerCase() === 'x-token-vendor-proof')?.[1];
      try {
        return { statusCode: 200, body: JSON.stringify(await provenToken(proof, body.audience, body.scope)) };
      } catch (error) {
        if (!(error instanceof IdentityProofError)) throw error;
        return { statusCode: 403, body: JSON.stringify({ error: 'access_denied', error_description: 'The identity proof was refused.' }) };
      }
    },
  });
  lambda = await startLocalLambdaInvoke({
    region: REGION,
    credentials: [LONG_TERM, TEMPORARY, STRANGER],
    functions: {
      vend: async (event) => {
        const { audience, scope, proof } = event as { audience: string; scope?: string; proof?: string };
        try {
          return await provenToken(proof, audience, scope);
        } catch (error) {
          if (!(error instanceof IdentityProofError)) throw error;
          return { error: 'access_denied', error_description: 'The identity proof was refused.', status: 403 };
        }
      },
      crashing: async () => {
        throw new TypeError('a bug');
      },
    },
  });
});

afterAll(async () => {
  await Promise.all([gateway?.close(), lambda?.close(), sts?.close()]);
});

function apiClient(who: LocalCredential, serverId = SERVER_ID): TokenVendorClient {
  return new TokenVendorClient({ endpoint: gateway.url, region: REGION, serverId, stsEndpoint: sts.origin, credentials: keyOf(who) });
}

function directClient(who: LocalCredential, functionName = 'vend'): TokenVendorClient {
  return new TokenVendorClient({ functionName, lambdaEndpoint: lambda.origin, region: REGION, serverId: SERVER_ID, stsEndpoint: sts.origin, credentials: keyOf(who) });
}

describe('the client proof verifies against the local STS stand-in', () => {
  it('API path: STS proves the caller that signed the request, with long-term and with temporary credentials', async () => {
    sts.resetCounters();

    const checkout = await apiClient(LONG_TERM).getToken({ audience: ORDERS, scope: 'write:orders read:orders' });
    const reporting = await apiClient(TEMPORARY).getToken({ audience: ORDERS });

    expect(checkout.accessToken).toBe('token-for arn:aws:iam::111122223333:role/checkout-service');
    expect(reporting.accessToken).toBe('token-for arn:aws:iam::111122223333:role/reporting-daily');
    expect(sts.callsBy('arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc')).toBe(1);
    expect(sts.callsBy('arn:aws:sts::111122223333:assumed-role/reporting-daily/job-1')).toBe(1);
  });

  it('API path: a proof for another deployment, or from keys STS does not know, is refused by STS', async () => {
    const otherDeployment = await caught(apiClient(LONG_TERM, 'token-vendor-other').getToken({ audience: ORDERS }));
    const stranger = await caught(apiClient(STRANGER).getToken({ audience: ORDERS }));

    expect(otherDeployment).toMatchObject({ status: 403, code: 'access_denied' });
    expect(stranger).toMatchObject({ status: 403, code: 'access_denied' });
  });

  it('direct invocation: the proof in the event proves the invoker, through the cache', async () => {
    sts.resetCounters();
    const client = directClient(TEMPORARY);
    const before = lambda.invocations('vend');

    const first = await client.getToken({ audience: ORDERS, scope: 'read:orders' });
    const again = await client.getToken({ audience: ORDERS, scope: 'read:orders' });

    expect(first.accessToken).toBe('token-for arn:aws:iam::111122223333:role/reporting-daily');
    expect(again).toBe(first);
    expect(lambda.invocations('vend') - before).toBe(1);
    expect(sts.calls()).toBe(1);
  });

  it('direct invocation: the stand-in Invoke API answers map like the API path', async () => {
    const refused = await caught(directClient(STRANGER).getToken({ audience: ORDERS }));
    const crashed = await caught(directClient(LONG_TERM, 'crashing').getToken({ audience: ORDERS }));
    const missing = await caught(directClient(LONG_TERM, 'no-such-function').getToken({ audience: ORDERS }));
    const unknownKey = await caught(
      new TokenVendorClient({ functionName: 'vend', lambdaEndpoint: lambda.origin, region: REGION, serverId: SERVER_ID, credentials: { accessKeyId: 'AKIAUNKNOWN000000001', secretAccessKey: 'x' } }).getToken({ audience: ORDERS }),
    );

    expect(refused).toMatchObject({ status: 403, code: 'access_denied' });
    expect(crashed).toMatchObject({ status: 502, code: ClientErrorCode.functionError });
    expect(crashed.message).toContain('Unhandled');
    expect(missing).toMatchObject({ status: 404, code: ClientErrorCode.httpError });
    expect(missing.message).toContain('ResourceNotFoundException');
    expect(unknownKey).toMatchObject({ status: 403, code: ClientErrorCode.httpError });
    expect(unknownKey.message).toContain('UnrecognizedClientException');
  });
});
