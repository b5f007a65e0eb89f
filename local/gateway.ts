/**
 * A local stand-in for the deployed REST API: API Gateway with `AWS_IAM` authorization and a
 * Lambda proxy integration. serverless-offline does not enforce AWS_IAM, so a caller could reach
 * the handler unsigned locally and fail only once deployed; this gateway verifies SigV4 itself
 * (`local/sigv4.ts`) and hands the handler the same v1 proxy event, with the same
 * `requestContext.identity`, that API Gateway builds for an IAM-authenticated caller.
 *
 * Every answer the gateway itself gives is OAuth-shaped (`{"error","error_description"}`), because
 * the deployed API maps its Gateway Responses to that shape too: callers need one error parser.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { parseQuery, splitUrl, verifySigV4, type LocalCredential } from './sigv4.js';
import { closerOf, listenOnLoopback } from './loopbackServer.js';

export type { LocalCredential } from './sigv4.js';

export interface LocalGatewayOptions {
  /** 0 (the default) picks a free port */
  port?: number;
  region: string;
  /** e.g. 'local': the API lives under http://127.0.0.1:PORT/<stage>/, like an invoke URL */
  stage: string;
  /** the keys the gateway accepts, and whose they are */
  credentials: LocalCredential[];
  handler: (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
  /** API Gateway's payload limit is 10 MB; default 10 MiB */
  maxBodyBytes?: number;
  /** API Gateway's maximum integration timeout; default 29 000 ms. After it, 504. */
  integrationTimeoutMs?: number;
  /** the account that owns the API (`requestContext.accountId`); default 123456789012 */
  accountId?: string;
  /** `requestContext.apiId`; default: 10 random lower-case characters, as API Gateway's */
  apiId?: string;
}

export interface LocalGateway {
  /** http://127.0.0.1:PORT/<stage>: what a caller uses as its endpoint */
  readonly url: string;
  readonly port: number;
  /** Stop listening and close every open socket. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;
const DEFAULT_INTEGRATION_TIMEOUT_MS = 29_000;
const FUNCTION_NAME = 'vend';
const STAGE_NAME = /^[A-Za-z0-9_-]{1,128}$/;
const ROLE_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role\/((?:[\w+=,.@-]+\/)*)([\w+=,.@-]{1,64})$/;
const USER_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):user\/((?:[\w+=,.@-]+\/)*)([\w+=,.@-]{1,64})$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;
/** The Content-Types API Gateway passes as text; anything else arrives base64 (binary media types). */
const TEXT_MEDIA_TYPE = /^(text\/[^;]+|application\/(?:[\w.+-]+\+)?json)\s*(;.*)?$/i;

/** What API Gateway puts in `requestContext.identity` for a caller, fixed per access key. */
interface CallerIdentity {
  credential: LocalCredential;
  userArn: string;
  caller: string;
  accountId: string;
}

/**
 * Start the gateway on 127.0.0.1. Resolves once it is listening; rejects if a credential's
 * principal ARN is not a role or user ARN, or the port is taken.
 */
export async function startLocalGateway(opts: LocalGatewayOptions): Promise<LocalGateway> {
  if (!STAGE_NAME.test(opts.stage)) throw new Error(`stage '${opts.stage}' is not a valid API Gateway stage name`);
  const accountId = opts.accountId ?? '123456789012';
  const apiId = opts.apiId ?? randomLowerAlnum(10);
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const integrationTimeoutMs = opts.integrationTimeoutMs ?? DEFAULT_INTEGRATION_TIMEOUT_MS;

  const identities = new Map<string, CallerIdentity>();
  for (const credential of opts.credentials) {
    if (identities.has(credential.accessKeyId)) throw new Error(`access key ID ${credential.accessKeyId} is listed twice`);
    identities.set(credential.accessKeyId, callerIdentity(credential));
  }

  const ctx: RequestScope = { opts, accountId, apiId, maxBodyBytes, integrationTimeoutMs, identities };
  const server = createServer((req, res) => {
    handleRequest(ctx, req, res).catch((error: unknown) => {
      // Only a bug in the gateway itself gets here; the handler's own failures are answered inside.
      console.error('local gateway: unexpected failure', error);
      if (!res.headersSent) sendError(res, 502, 'server_error', 'Internal server error');
      else res.destroy();
    });
  });

  const port = await listenOnLoopback(server, opts.port ?? 0);
  return {
    url: `http://127.0.0.1:${port}/${opts.stage}`,
    port,
    close: closerOf(server),
  };
}

interface RequestScope {
  opts: LocalGatewayOptions;
  accountId: string;
  apiId: string;
  maxBodyBytes: number;
  integrationTimeoutMs: number;
  identities: Map<string, CallerIdentity>;
}

async function handleRequest(ctx: RequestScope, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const requestId = randomUUID();
  const startedAt = Date.now();
  res.setHeader('x-amzn-RequestId', requestId);

  const rawUrl = req.url ?? '/';
  const { path: rawPath, query } = splitUrl(rawUrl);
  const prefix = `/${ctx.opts.stage}/`;
  const resourcePath = rawPath.startsWith(prefix) ? rawPath.slice(prefix.length - 1) : undefined;
  // API Gateway answers 403 "Missing Authentication Token" for a path no resource matches, signed
  // or not. Dot segments are refused too: the signature covers the normalized path, and we would
  // not want to route on a different one than was signed.
  if (resourcePath === undefined || resourcePath === '/' || resourcePath.split('/').some((s) => s === '.' || s === '..')) {
    req.resume();
    sendError(res, 403, 'access_denied', `Missing Authentication Token: no resource at this path; the API is served under /${ctx.opts.stage}/.`);
    return;
  }

  const body = await readBody(req, ctx.maxBodyBytes);
  if (body === undefined) {
    res.setHeader('connection', 'close');
    sendError(res, 413, 'invalid_request', `Request body exceeds ${ctx.maxBodyBytes} bytes.`);
    return;
  }

  const verdict = await verifySigV4(
    { method: req.method ?? 'GET', url: rawUrl, headers: req.headersDistinct, body },
    { lookup: (akid) => ctx.identities.get(akid)?.credential, region: ctx.opts.region },
  );
  if (!verdict.ok) {
    sendError(res, 403, 'access_denied', verdict.message);
    return;
  }
  const identity = ctx.identities.get(verdict.credential.accessKeyId);
  if (identity === undefined) throw new Error('verified a key with no identity');

  const params = parseQuery(query) ?? []; // verifySigV4 already refused a broken query
  const event = buildEvent(ctx, req, { requestId, startedAt, rawPath, resourcePath, params, body, identity });
  // Lambda's request ID is its own, not API Gateway's, as in AWS.
  const context = buildContext(ctx, randomUUID(), startedAt + ctx.integrationTimeoutMs);

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ctx.integrationTimeoutMs);
  });
  const invocation = Promise.resolve().then(() => ctx.opts.handler(event, context));
  let result: APIGatewayProxyResult | 'timeout';
  try {
    result = await Promise.race([invocation, timedOut]);
  } catch (error) {
    // API Gateway answers {"message":"Internal server error"}; the deployed Gateway Response
    // reshapes it, and the detail stays in the log, never in the body.
    console.error(`local gateway: handler threw (request ${requestId})`, error);
    sendError(res, 502, 'server_error', 'Internal server error');
    return;
  } finally {
    clearTimeout(timer);
  }
  if (result === 'timeout') {
    invocation.catch((error: unknown) => console.error(`local gateway: handler failed after timing out (request ${requestId})`, error));
    sendError(res, 504, 'temporarily_unavailable', 'Endpoint request timed out');
    return;
  }
  writeResult(res, result, requestId);
}

/** Collect the body; `undefined` once it exceeds the limit (the rest is drained, not kept). */
function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > limit) {
      req.resume();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

interface EventInputs {
  requestId: string;
  startedAt: number;
  rawPath: string;
  resourcePath: string;
  params: Array<[string, string]>;
  body: Uint8Array;
  identity: CallerIdentity;
}

function buildEvent(ctx: RequestScope, req: IncomingMessage, input: EventInputs): APIGatewayProxyEvent {
  const { headers, multiValueHeaders } = eventHeaders(req, input);
  const method = req.method ?? 'GET';
  const resource = input.resourcePath === '/token' ? '/token' : '/{proxy+}';
  // `path` is the path below the stage as received; the proxy parameter is decoded.
  const path = input.resourcePath;
  const pathParameters = resource === '/{proxy+}' ? { proxy: safeDecode(path.slice(1)) } : null;

  const queryStringParameters: Record<string, string> = {};
  const multiValueQueryStringParameters: Record<string, string[]> = {};
  for (const [name, value] of input.params) {
    queryStringParameters[name] = value; // the last one wins, as in API Gateway
    (multiValueQueryStringParameters[name] ??= []).push(value);
  }
  const hasQuery = input.params.length > 0;

  const contentType = lastHeader(req, 'content-type');
  const isText = contentType === undefined || TEXT_MEDIA_TYPE.test(contentType);
  const body = input.body.length === 0 ? null : isText ? Buffer.from(input.body).toString('utf8') : Buffer.from(input.body).toString('base64');

  const sourceIp = clientIp(req);
  const host = lastHeader(req, 'host') ?? '127.0.0.1';
  return {
    resource,
    path,
    httpMethod: method,
    headers,
    multiValueHeaders,
    queryStringParameters: hasQuery ? queryStringParameters : null,
    multiValueQueryStringParameters: hasQuery ? multiValueQueryStringParameters : null,
    pathParameters,
    stageVariables: null,
    body,
    isBase64Encoded: body !== null && !isText,
    requestContext: {
      accountId: ctx.accountId,
      apiId: ctx.apiId,
      authorizer: null,
      domainName: host,
      domainPrefix: host.split('.')[0] ?? host,
      extendedRequestId: randomBase64Id(),
      httpMethod: method,
      identity: {
        accessKey: input.identity.credential.accessKeyId,
        accountId: input.identity.accountId,
        apiKey: null,
        apiKeyId: null,
        caller: input.identity.caller,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp,
        user: input.identity.caller,
        userAgent: lastHeader(req, 'user-agent') ?? null,
        userArn: input.identity.userArn,
      },
      path: input.rawPath,
      protocol: `HTTP/${req.httpVersion}`,
      requestId: input.requestId,
      requestTime: formatRequestTime(new Date(input.startedAt)),
      requestTimeEpoch: input.startedAt,
      resourceId: randomLowerAlnum(6),
      resourcePath: resource,
      stage: ctx.opts.stage,
    },
  };
}

/**
 * Headers as API Gateway passes them: names in the case the client sent, `headers` holding the
 * last value of each and `multiValueHeaders` all of them, plus the X-Forwarded-* and trace headers
 * API Gateway adds.
 */
function eventHeaders(req: IncomingMessage, input: EventInputs): { headers: Record<string, string>; multiValueHeaders: Record<string, string[]> } {
  const headers: Record<string, string> = {};
  const multiValueHeaders: Record<string, string[]> = {};
  const add = (name: string, value: string): void => {
    headers[name] = value;
    (multiValueHeaders[name] ??= []).push(value);
  };
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) add(req.rawHeaders[i] ?? '', req.rawHeaders[i + 1] ?? '');

  const present = new Set(Object.keys(headers).map((h) => h.toLowerCase()));
  const added: Array<[string, string]> = [
    ['X-Forwarded-For', clientIp(req)],
    ['X-Forwarded-Port', String(req.socket.localPort ?? '')],
    ['X-Forwarded-Proto', 'http'],
    ['X-Amzn-Trace-Id', `Root=1-${Math.floor(input.startedAt / 1000).toString(16)}-${randomBytes(12).toString('hex')}`],
  ];
  for (const [name, value] of added) if (!present.has(name.toLowerCase())) add(name, value);
  return { headers, multiValueHeaders };
}

function buildContext(ctx: RequestScope, awsRequestId: string, deadline: number): Context {
  const unsupported = (): never => {
    throw new Error('the local gateway supports async handlers only: return a promise');
  };
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: FUNCTION_NAME,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${ctx.opts.region}:${ctx.accountId}:function:${FUNCTION_NAME}`,
    memoryLimitInMB: '1024',
    awsRequestId,
    logGroupName: `/aws/lambda/${FUNCTION_NAME}`,
    logStreamName: `${day}/[$LATEST]${randomBytes(16).toString('hex')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

/**
 * Write the proxy result as API Gateway does. A result that is not a valid proxy response is a
 * 502 there ("Malformed Lambda proxy response"), so it is here.
 */
function writeResult(res: ServerResponse, result: APIGatewayProxyResult, requestId: string): void {
  const problem = invalidResult(result);
  if (problem !== undefined) {
    console.error(`local gateway: malformed Lambda proxy response (request ${requestId}): ${problem}`);
    sendError(res, 502, 'server_error', 'Internal server error');
    return;
  }
  const merged = new Map<string, { name: string; values: string[] }>();
  for (const [name, values] of Object.entries(result.multiValueHeaders ?? {})) {
    merged.set(name.toLowerCase(), { name, values: values.map(String) });
  }
  // A key in both lists keeps the multi-value values, plus the single value if it is new.
  for (const [name, value] of Object.entries(result.headers ?? {})) {
    const entry = merged.get(name.toLowerCase());
    if (entry === undefined) merged.set(name.toLowerCase(), { name, values: [String(value)] });
    else if (!entry.values.includes(String(value))) entry.values.push(String(value));
  }
  try {
    res.statusCode = result.statusCode;
    for (const { name, values } of merged.values()) {
      if (name.toLowerCase() === 'content-length' || name.toLowerCase() === 'transfer-encoding') continue; // the gateway frames the body
      res.setHeader(name, values.length === 1 ? (values[0] ?? '') : values);
    }
    // API Gateway labels an untyped proxy response as JSON.
    if (!merged.has('content-type')) res.setHeader('content-type', 'application/json');
  } catch (error) {
    console.error(`local gateway: handler returned an invalid header (request ${requestId})`, error);
    for (const name of res.getHeaderNames()) if (name !== 'x-amzn-requestid') res.removeHeader(name);
    sendError(res, 502, 'server_error', 'Internal server error');
    return;
  }
  const body = result.isBase64Encoded ? Buffer.from(result.body, 'base64') : Buffer.from(result.body ?? '', 'utf8');
  res.end(body);
}

function invalidResult(result: unknown): string | undefined {
  if (typeof result !== 'object' || result === null) return 'the result is not an object';
  const r = result as Record<string, unknown>;
  if (typeof r.statusCode !== 'number' || !Number.isInteger(r.statusCode) || r.statusCode < 100 || r.statusCode > 599) {
    return 'statusCode is not an HTTP status';
  }
  if (r.body !== undefined && r.body !== null && typeof r.body !== 'string') return 'body is not a string';
  if (r.isBase64Encoded === true && typeof r.body !== 'string') return 'isBase64Encoded without a string body';
  const scalar = (v: unknown): boolean => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
  if (r.headers !== undefined && r.headers !== null) {
    if (typeof r.headers !== 'object' || !Object.values(r.headers).every(scalar)) return 'headers must map names to scalars';
  }
  if (r.multiValueHeaders !== undefined && r.multiValueHeaders !== null) {
    if (typeof r.multiValueHeaders !== 'object' || !Object.values(r.multiValueHeaders).every((v) => Array.isArray(v) && v.every(scalar))) {
      return 'multiValueHeaders must map names to arrays of scalars';
    }
  }
  return undefined;
}

function sendError(res: ServerResponse, status: number, error: string, description: string): void {
  const body = JSON.stringify({ error, error_description: description });
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  res.end(body);
}

/**
 * The identity API Gateway reports for a key's owner. An assumed role appears as its STS session
 * ARN, which drops the role's path; `caller` is `ROLEID:SESSION` for a role and the user ID for a
 * user. The IDs are fake but stable (derived from the ARN), shaped like AWS's 21-character ones.
 */
function callerIdentity(credential: LocalCredential): CallerIdentity {
  const role = ROLE_ARN.exec(credential.principalArn);
  if (role !== null) {
    const [, partition = '', account = '', , name = ''] = role;
    const session = credential.sessionName ?? 'local-session';
    if (!SESSION_NAME.test(session)) throw new Error(`session name '${session}' is not a valid STS role session name`);
    const caller = `${fakeUniqueId('AROA', credential.principalArn)}:${session}`;
    return { credential, userArn: `arn:${partition}:sts::${account}:assumed-role/${name}/${session}`, caller, accountId: account };
  }
  const user = USER_ARN.exec(credential.principalArn);
  if (user !== null) {
    const [, , account = ''] = user;
    return { credential, userArn: credential.principalArn, caller: fakeUniqueId('AIDA', credential.principalArn), accountId: account };
  }
  throw new Error(`principalArn '${credential.principalArn}' is neither an IAM role ARN nor an IAM user ARN`);
}

function fakeUniqueId(prefix: string, seed: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const digest = createHash('sha256').update(seed).digest();
  let id = prefix;
  for (let i = 0; i < 17; i++) id += alphabet[(digest[i] ?? 0) & 31];
  return id;
}

function randomLowerAlnum(length: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(randomBytes(length), (b) => alphabet[b % alphabet.length]).join('');
}

/** `extendedRequestId` looks like `BYZ7RFRpjoEFhHw=`: base64 of 10 random bytes. */
function randomBase64Id(): string {
  return randomBytes(10).toString('base64');
}

function lastHeader(req: IncomingMessage, name: string): string | undefined {
  return req.headersDistinct[name]?.at(-1);
}

function clientIp(req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** `24/Nov/2025:03:07:00 +0000`, the format of `requestContext.requestTime`. */
function formatRequestTime(date: Date): string {
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${pad(date.getUTCDate())}/${months[date.getUTCMonth()]}/${date.getUTCFullYear()}:${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}
