/**
 * A local stand-in for Lambda's Invoke API, for the caller client's direct-invocation mode
 * (scheduled jobs): `POST /2015-03-31/functions/{FunctionName}/invocations`, SigV4 service
 * `lambda` (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html). The signature is
 * verified with the gateway's verifier (`verifySigV4`), against the same local credentials; the
 * payload is handed to the handler as the event, and its JSON result is the answer.
 *
 * What it reproduces of Invoke:
 * - `RequestResponse` (the default): 200, the result as JSON, `X-Amz-Executed-Version: $LATEST`;
 *   a handler that throws: 200 with `X-Amz-Function-Error: Unhandled` and the Node.js runtime's
 *   error payload `{"errorType","errorMessage","trace"}`; past the timeout:
 *   `{"errorType":"Sandbox.Timedout","errorMessage":"... Task timed out after N seconds"}`.
 * - `Event`: 202, the handler run in the background; `DryRun`: 204, nothing run.
 * - Lambda's own refusals, as REST-JSON errors (`X-Amzn-ErrorType` and `{"Type","Message"}`):
 *   `ResourceNotFoundException` 404 for an unknown function, `InvalidRequestContentException` 400
 *   for a payload that is not JSON, `RequestTooLargeException` 413 past 6 MB, and the signature
 *   errors of AWS JSON services (`MissingAuthenticationTokenException`,
 *   `UnrecognizedClientException`, `InvalidSignatureException`, `IncompleteSignatureException`).
 *
 * Not reproduced: qualifiers other than `$LATEST`, log tails (`X-Amz-Log-Type: Tail` is ignored),
 * client context.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Context } from 'aws-lambda';
import { parseQuery, splitUrl, verifySigV4, type LocalCredential, type SigV4Failure } from './sigv4.js';
import { closerOf, listenOnLoopback } from './loopbackServer.js';

export type LocalLambdaHandler = (event: unknown, context: Context) => Promise<unknown>;

export interface LocalLambdaInvokeOptions {
  /** function name → handler */
  functions: Record<string, LocalLambdaHandler>;
  /** the keys the Invoke API accepts (the local credentials file) */
  credentials: LocalCredential[];
  region: string;
  /** the account in function ARNs; default 123456789012 */
  accountId?: string;
  /** 0 (the default) picks a free port */
  port?: number;
  /** the functions' timeout; default 28 000 ms (serverless.yml's `timeout: 28`) */
  timeoutMs?: number;
}

export interface LocalLambdaInvoke {
  /** `http://127.0.0.1:PORT`: the client's `lambdaEndpoint` */
  readonly origin: string;
  readonly port: number;
  /** `arn:aws:lambda:REGION:ACCOUNT:function:NAME` */
  functionArn(name: string): string;
  /** handler runs started for `name` (every function when omitted), since start */
  invocations(name?: string): number;
  close(): Promise<void>;
}

const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024; // Invoke's synchronous payload quota
const DEFAULT_TIMEOUT_MS = 28_000;
const PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
/** A full or partial function ARN, or a name, optionally with `:$LATEST` (API_Invoke.html, FunctionName). */
const FUNCTION_REF = /^(?:arn:(aws|aws-cn|aws-us-gov):lambda:([a-z0-9-]+):(\d{12}):function:)?([a-zA-Z0-9_-]{1,64})(?::(\$LATEST|[a-zA-Z0-9_-]+))?$/;

/** Signature failures as AWS JSON-protocol services name them. */
const REFUSALS: Record<SigV4Failure, [number, string]> = {
  missing: [403, 'MissingAuthenticationTokenException'],
  malformed: [400, 'IncompleteSignatureException'],
  unknown_key: [403, 'UnrecognizedClientException'],
  wrong_scope: [403, 'InvalidSignatureException'],
  stale: [403, 'InvalidSignatureException'],
  signature_mismatch: [403, 'InvalidSignatureException'],
};

/** Start the Invoke stand-in on 127.0.0.1. */
export async function startLocalLambdaInvoke(opts: LocalLambdaInvokeOptions): Promise<LocalLambdaInvoke> {
  const accountId = opts.accountId ?? '123456789012';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const keys = new Map<string, LocalCredential>();
  for (const credential of opts.credentials) {
    if (keys.has(credential.accessKeyId)) throw new Error(`access key ID ${credential.accessKeyId} is listed twice`);
    keys.set(credential.accessKeyId, credential);
  }
  const counts = new Map<string, number>();
  const functionArn = (name: string): string => `arn:aws:lambda:${opts.region}:${accountId}:function:${name}`;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestId = randomUUID();
    res.setHeader('x-amzn-RequestId', requestId);
    const body = await readBody(req);
    if (body === undefined) {
      res.setHeader('connection', 'close');
      return sendError(res, 413, 'RequestTooLargeException', `Request must be smaller than ${MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation`);
    }
    const rawUrl = req.url ?? '/';
    const { path, query } = splitUrl(rawUrl);
    const match = PATH.exec(path);
    if (match === null) return sendError(res, 404, 'UnknownOperationException', 'The local Lambda serves only POST /2015-03-31/functions/{FunctionName}/invocations.');
    if (req.method !== 'POST') return sendError(res, 405, 'UnknownOperationException', 'Invoke is POST.');

    const verdict = await verifySigV4(
      { method: req.method, url: rawUrl, headers: req.headersDistinct, body },
      { lookup: (akid) => keys.get(akid), region: opts.region, service: 'lambda' },
    );
    if (!verdict.ok) {
      const [status, code] = REFUSALS[verdict.failure];
      return sendError(res, status, code, verdict.failure === 'unknown_key' ? 'The security token included in the request is invalid.' : verdict.message);
    }

    const name = resolveFunction(safeDecode(match[1] ?? ''), parseQuery(query) ?? [], opts.region, accountId);
    const handler = name === undefined ? undefined : Object.hasOwn(opts.functions, name) ? opts.functions[name] : undefined;
    if (name === undefined || handler === undefined) {
      return sendError(res, 404, 'ResourceNotFoundException', `Function not found: ${functionArn(name ?? safeDecode(match[1] ?? '').slice(0, 140))}`);
    }

    let event: unknown = {};
    if (body.length > 0) {
      try {
        event = JSON.parse(Buffer.from(body).toString('utf8'));
      } catch {
        return sendError(res, 400, 'InvalidRequestContentException', 'Could not parse request body into json: the payload is not valid JSON.');
      }
    }

    const invocationType = req.headersDistinct['x-amz-invocation-type']?.at(-1) ?? 'RequestResponse';
    if (invocationType === 'DryRun') {
      res.statusCode = 204;
      res.end();
      return;
    }
    if (invocationType !== 'RequestResponse' && invocationType !== 'Event') {
      return sendError(res, 400, 'InvalidParameterValueException', `X-Amz-Invocation-Type must be RequestResponse, Event or DryRun.`);
    }

    counts.set(name, (counts.get(name) ?? 0) + 1);
    const awsRequestId = randomUUID();
    const run = runHandler(handler, event, lambdaContext(name, functionArn(name), awsRequestId, timeoutMs), timeoutMs);
    if (invocationType === 'Event') {
      res.statusCode = 202;
      res.end();
      void run;
      return;
    }
    const outcome = await run;
    res.setHeader('X-Amz-Executed-Version', '$LATEST');
    res.setHeader('content-type', 'application/json');
    if (outcome.kind === 'error') res.setHeader('X-Amz-Function-Error', 'Unhandled');
    res.statusCode = 200;
    res.end(JSON.stringify(outcome.payload) ?? 'null');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      console.error('local Lambda: unexpected failure', error);
      if (!res.headersSent) sendError(res, 500, 'ServiceException', 'Internal failure');
      else res.destroy();
    });
  });
  const port = await listenOnLoopback(server, opts.port ?? 0);
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    functionArn,
    invocations: (name) => (name === undefined ? [...counts.values()].reduce((a, b) => a + b, 0) : (counts.get(name) ?? 0)),
    close: closerOf(server),
  };
}

/** The function name an Invoke `FunctionName` (and `Qualifier`) names here; undefined for another region, account or version. */
function resolveFunction(ref: string, params: Array<[string, string]>, region: string, accountId: string): string | undefined {
  const m = FUNCTION_REF.exec(ref);
  if (m === null) return undefined;
  const [, , arnRegion, arnAccount, name, qualifier] = m;
  if (arnRegion !== undefined && (arnRegion !== region || arnAccount !== accountId)) return undefined;
  const qualifiers = [qualifier, ...params.filter(([k]) => k === 'Qualifier').map(([, v]) => v)].filter((q) => q !== undefined);
  if (qualifiers.some((q) => q !== '$LATEST')) return undefined;
  return name;
}

type Outcome = { kind: 'result'; payload: unknown } | { kind: 'error'; payload: { errorType: string; errorMessage: string; trace?: string[] } };

async function runHandler(handler: LocalLambdaHandler, event: unknown, context: Context, timeoutMs: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const invocation = Promise.resolve().then(() => handler(event, context));
  try {
    const result = await Promise.race([invocation, timedOut]);
    if (result === 'timeout') {
      invocation.catch((error: unknown) => console.error('local Lambda: handler failed after timing out', error));
      return {
        kind: 'error',
        payload: { errorType: 'Sandbox.Timedout', errorMessage: `${new Date().toISOString()} ${context.awsRequestId} Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds` },
      };
    }
    return { kind: 'result', payload: result === undefined ? null : result };
  } catch (error) {
    // The Node.js runtime's payload for an unhandled error (what Invoke returns with X-Amz-Function-Error).
    const err = error instanceof Error ? error : new Error(String(error));
    return { kind: 'error', payload: { errorType: err.name, errorMessage: err.message, trace: (err.stack ?? '').split('\n') } };
  } finally {
    clearTimeout(timer);
  }
}

function lambdaContext(name: string, arn: string, awsRequestId: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  const unsupported = (): never => {
    throw new Error('the local Lambda supports async handlers only: return a promise');
  };
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: name,
    functionVersion: '$LATEST',
    invokedFunctionArn: arn,
    memoryLimitInMB: '1024',
    awsRequestId,
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: `${day}/[$LATEST]${randomBytes(16).toString('hex')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

/** REST-JSON error: the code in `X-Amzn-ErrorType` (which the SDKs read first) and in the body. */
function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  res.statusCode = status;
  res.setHeader('x-amzn-ErrorType', code);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ Type: status >= 500 ? 'Service' : 'User', Message: message, message }));
}

function readBody(req: IncomingMessage): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > MAX_PAYLOAD_BYTES) {
      req.resume();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_PAYLOAD_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_PAYLOAD_BYTES ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

