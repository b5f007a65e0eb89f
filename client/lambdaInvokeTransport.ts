/**
 * Direct invocation, for scheduled jobs: Lambda's Invoke API
 * (`POST /2015-03-31/functions/{FunctionName}/invocations`, SigV4 service `lambda`;
 * https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html) with the event
 * `{"audience", "scope"?, "organization"?, "proof"}` (docs/identity-proof.md, "Where the proof travels").
 *
 * Three kinds of answer, each mapped to the error the API path would give:
 * - Lambda itself refused (non-2xx: `AccessDeniedException` without `lambda:InvokeFunction`,
 *   `ResourceNotFoundException`, `TooManyRequestsException` with `Retry-After`, ...): `http_error`
 *   with Lambda's status, as the API path reports an answer that is not the vendor's;
 * - the function crashed (200 with `X-Amz-Function-Error`): `function_error`, status 502, what API
 *   Gateway answers when its Lambda integration fails;
 * - the function answered: a token body, or the vendor's OAuth error body, which carries the
 *   status (and, for 503, `retry_after` seconds) the API path would have sent as HTTP.
 */
import { isRecord, parseJson, parseRetryAfter, printable, tokenFromBody, vendorRefusal } from './answers.js';
import { ClientErrorCode, TokenVendorError } from './errors.js';
import { parseOriginOption, regionalHost } from './identityProof.js';
import { SignedPoster } from './signedPost.js';
import type { Transport, TransportOptions } from './transport.js';

/** Invoke's `FunctionName`: a name, a partial or full ARN, optionally qualified (API_Invoke.html). */
const FUNCTION_NAME =
  /^(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:[a-z]{2}(?:-gov)?-[a-z]+-\d{1}:)?(?:\d{12}:)?(?:function:)?[a-zA-Z0-9_.-]+(?::(?:\$LATEST|[a-zA-Z0-9_-]+))?$/;
const MAX_FUNCTION_NAME = 170;
/** What API Gateway answers when a Lambda proxy integration fails; the API path would see it. */
const FUNCTION_ERROR_STATUS = 502;
/** For a vendor that sends no `status` in a direct error body: the status its API path uses. */
const STATUS_BY_ERROR: Readonly<Record<string, number>> = {
  invalid_request: 400,
  access_denied: 403,
  temporarily_unavailable: 503,
  server_error: 500,
};

export interface LambdaInvokeOptions extends TransportOptions {
  functionName: string;
  /** an http(s) origin instead of `https://lambda.<region>.amazonaws.com` (the local stand-in) */
  lambdaEndpoint?: string;
}

/** @throws TypeError for a function name Invoke would refuse, or a bad `lambdaEndpoint` */
export function lambdaInvokeTransport(opts: LambdaInvokeOptions): Transport {
  const { functionName } = opts;
  if (typeof functionName !== 'string' || functionName.length > MAX_FUNCTION_NAME || !FUNCTION_NAME.test(functionName)) {
    throw new TypeError('functionName must be a Lambda function name or ARN');
  }
  const origin = opts.lambdaEndpoint === undefined ? new URL(`https://${regionalHost('lambda', opts.region)}`) : parseOriginOption('lambdaEndpoint', opts.lambdaEndpoint);
  // The name is one path segment: an ARN's colons are percent-encoded, as the AWS SDKs do.
  const invokeUrl = new URL(`/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`, origin);
  const poster = new SignedPoster({ ...opts, service: 'lambda', peer: 'Lambda' });

  return async ({ audience, scope, organization, proof }) => {
    const event = JSON.stringify({ audience, ...(scope === '' ? {} : { scope }), ...(organization === undefined ? {} : { organization }), proof });
    const { response, text } = await poster.post(invokeUrl, event, {
      'content-type': 'application/json',
      // Wait for the function's answer (the default, said out loud) and ask for no log tail.
      'x-amz-invocation-type': 'RequestResponse',
      'x-amz-log-type': 'None',
    });
    const receivedAt = opts.now();
    const body = parseJson(text);

    if (response.status < 200 || response.status > 299) throw lambdaRefusal(response, body, receivedAt);

    const functionError = response.headers.get('x-amz-function-error');
    if (functionError !== null) {
      // The type names the failure (Runtime.ExitError, Sandbox.Timedout); the message and trace
      // stay out of ours: they are the function's internals.
      const type = isRecord(body) && typeof body.errorType === 'string' ? `: ${printable(body.errorType, 64)}` : '';
      throw new TokenVendorError(`The vend function failed (${printable(functionError, 32)}${type}).`, {
        status: FUNCTION_ERROR_STATUS,
        code: ClientErrorCode.functionError,
      });
    }

    if (isRecord(body) && typeof body.error === 'string') {
      const status = typeof body.status === 'number' && Number.isInteger(body.status) && body.status >= 400 && body.status <= 599 ? body.status : (STATUS_BY_ERROR[body.error] ?? 500);
      const retryAfter = typeof body.retry_after === 'number' && Number.isSafeInteger(body.retry_after) && body.retry_after >= 0 ? body.retry_after : undefined;
      throw vendorRefusal(status, body, retryAfter);
    }
    return tokenFromBody(response.status, body, scope, receivedAt);
  };
}

/** Lambda's own error (`x-amzn-ErrorType`, JSON `message`): not the vendor's answer. */
function lambdaRefusal(response: Response, body: unknown, receivedAt: number): TokenVendorError {
  // `x-amzn-ErrorType: ResourceNotFoundException:http://internal.amazon.com/...`: the name is
  // the part before the first colon (what the AWS SDKs read).
  const typeHeader = response.headers.get('x-amzn-errortype');
  const type = typeHeader === null ? undefined : printable(typeHeader.split(':', 1)[0] ?? '', 64);
  const rawMessage = isRecord(body) ? (body.message ?? body.Message) : undefined;
  const detail = typeof rawMessage === 'string' ? `: ${printable(rawMessage)}` : '';
  const retryAfterSeconds = parseRetryAfter(response.headers.get('retry-after'), receivedAt);
  return new TokenVendorError(`Lambda refused the invocation: ${response.status}${type === undefined || type === '' ? '' : ` ${type}`}${detail}`, {
    status: response.status,
    code: ClientErrorCode.httpError,
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  });
}
