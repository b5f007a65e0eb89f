/**
 * The deadlines of the AWS SDK v3 clients the functions call (DynamoDB here; Secrets Manager and KMS
 * in secretsManagerModule.ts and kmsModule.ts, loaded on first use), and the DynamoDB client.
 * The SDK's default is no timeout at all: a call to an endpoint that accepts the connection and
 * never answers would wait until Lambda kills the invocation. Here every client gets, once, at
 * construction, through the client's `requestHandler` options (`NodeHttpHandlerOptions` in
 * @smithy/types, dist-types/http/httpHandlerInitialization.d.ts) and `maxAttempts`:
 *
 * - a connection timeout (TCP + TLS set-up): in-region this takes milliseconds, so a second means
 *   the endpoint is not there, and the attempt is abandoned and retried;
 * - a request timeout for a whole attempt (connect, send, response): DynamoDB, Secrets Manager and
 *   KMS answer in tens of milliseconds. `throwOnRequestTimeout` must be set with it: without it,
 *   @smithy/node-http-handler 4.x only logs a warning when the request timeout passes;
 * - a bounded number of attempts (the first one included). A timeout is a transient error to the
 *   SDK's standard retry strategy, so it is retried, with the SDK's jittered back-off in between.
 *
 * Why these numbers: API Gateway gives up at 29 s and the function's timeout is 28 s
 * (serverless.yml). A fetch from Auth0 may take up to IDP_DEADLINE_MS (10 s). Around it, a vend
 * with DynamoDB hung makes at most three calls one after another that each fail into degraded
 * mode (read, lease, write): each call gives up after AWS_MAX_ATTEMPTS × AWS_REQUEST_TIMEOUT_MS
 * plus a back-off of at most a second (≈ 5 s), so 3 × 5 s + 10 s stays inside 28 s. A hung call
 * fails the step that made it (a 503, a degraded read) instead of using up the invocation.
 *
 * Build each client once per instance (at cold start, in the composition root) and pass it in:
 * the keep-alive connections are then reused by every invocation.
 */
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';

/** Most time a connection may take to be established before the attempt is abandoned. */
export const AWS_CONNECTION_TIMEOUT_MS = 1_000;
/** Most time one attempt (connection, request and response) may take. */
export const AWS_REQUEST_TIMEOUT_MS = 2_000;
/** Attempts per call, the first one included: one retry, so a call ends within ≈ 5 s. */
export const AWS_MAX_ATTEMPTS = 2;

/** Credentials or a provider of them: the same type on every SDK v3 client. */
type AwsCredentials = DynamoDBClientConfig['credentials'];

/**
 * What a caller may set on top of the deadlines: where the client points and as whom (the local
 * stack and the tests point it at moto_server). The deadlines themselves cannot be overridden.
 */
export interface AwsClientOverrides {
  readonly endpoint?: string;
  readonly region?: string;
  readonly credentials?: AwsCredentials;
}

/** The configuration every client shares: the deadlines, then the overrides. */
export function withDeadlines(overrides: AwsClientOverrides): {
  requestHandler: { connectionTimeout: number; requestTimeout: number; throwOnRequestTimeout: boolean };
  maxAttempts: number;
} & AwsClientOverrides {
  return {
    requestHandler: { connectionTimeout: AWS_CONNECTION_TIMEOUT_MS, requestTimeout: AWS_REQUEST_TIMEOUT_MS, throwOnRequestTimeout: true },
    maxAttempts: AWS_MAX_ATTEMPTS,
    ...overrides,
  };
}

export function dynamoDbClient(overrides: AwsClientOverrides = {}): DynamoDBClient {
  const config: DynamoDBClientConfig = withDeadlines(overrides);
  return new DynamoDBClient(config);
}


// The Secrets Manager and KMS clients' factories are in secretsManagerModule.ts and kmsModule.ts,
// which `vend` loads only when it must read a secret or unwrap a data key: its warm path never
// loads either client.
