/**
 * The real vendor (functions/vendor.ts on a test stack: local Auth0 tenant, moto) behind both
 * local front doors a caller uses: the gateway (`POST /token`, SigV4 `execute-api`) and the
 * Lambda Invoke stand-in (function `vend`), with an STS stand-in that knows this file's callers.
 * The vendor is pointed at that STS (STS_ENDPOINT) and SERVER_ID (PROOF_SERVER_ID), so callers'
 * keys stay in the test and never depend on the test stack's own random ones.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { startLocalGateway, type LocalCredential, type LocalGateway } from '../../local/gateway.js';
import { startLocalLambdaInvoke, type LocalLambdaInvoke } from '../../local/lambdaInvoke.js';
import { startLocalSts, type LocalSts } from '../../local/sts.js';
import { startTestStack, type TestStack } from '../helpers/testStack.js';
import { REGION, SERVER_ID } from './fakes.js';

/** Granted ORDERS read:orders and write:orders over the API only (the test stack's grants). */
export const CHECKOUT: LocalCredential = {
  accessKeyId: 'AKIAE2ECHECKOUT00001',
  secretAccessKey: 'e2e-checkout-secret/+=',
  principalArn: 'arn:aws:iam::111122223333:role/checkout-service',
  sessionName: 'e2e-caller',
};
/** Granted ORDERS read:orders, also by direct invocation; temporary keys. */
export const REPORTING: LocalCredential = {
  accessKeyId: 'ASIAE2EREPORTING0001',
  secretAccessKey: 'e2e-reporting-secret',
  sessionToken: `FwoGZXIvYXdzE+/=${'q'.repeat(600)}`,
  principalArn: 'arn:aws:iam::111122223333:role/reporting-daily',
  sessionName: 'job-7',
};

export interface VendorStack {
  readonly stack: TestStack;
  readonly sts: LocalSts;
  readonly gateway: LocalGateway;
  readonly lambda: LocalLambdaInvoke;
  close(): Promise<void>;
}

export async function startVendorStack(): Promise<VendorStack> {
  const sts = await startLocalSts({ credentials: [CHECKOUT, REPORTING], region: REGION });
  const stack = await startTestStack();
  const vendor = stack.vendor({ env: { STS_ENDPOINT: sts.origin, PROOF_SERVER_ID: SERVER_ID } });
  const gateway = await startLocalGateway({
    region: REGION,
    stage: 'local',
    credentials: [CHECKOUT, REPORTING],
    handler: vendor.handler as (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>,
  });
  const lambda = await startLocalLambdaInvoke({ region: REGION, credentials: [CHECKOUT, REPORTING], functions: { vend: vendor.handler } });
  return {
    stack,
    sts,
    gateway,
    lambda,
    close: async () => {
      await Promise.all([gateway.close(), lambda.close(), sts.close()]);
      await stack.close();
    },
  };
}

export function keysOf(c: LocalCredential): { accessKeyId: string; secretAccessKey: string; sessionToken?: string } {
  return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, ...(c.sessionToken === undefined ? {} : { sessionToken: c.sessionToken }) };
}

/** The same keys as the AWS SDKs' environment variables, for a child process's default chain. */
export function envKeysOf(c: LocalCredential): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey, ...(c.sessionToken === undefined ? {} : { AWS_SESSION_TOKEN: c.sessionToken }) };
}

/** A child's environment with only the given keys: no profile, SSO cache or instance metadata. */
export function cleanEnv(extra: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_EC2_METADATA_DISABLED: 'true',
    // Importing the example must not leave __pycache__ in the checkout.
    PYTHONDONTWRITEBYTECODE: '1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    ...extra,
  };
}
