/**
 * A local stand-in for AWS STS's `GetCallerIdentity`, for the identity proof
 * (docs/identity-proof.md): moto's STS does not verify signatures, so it cannot tell a forged proof
 * from a real one. This one verifies the presigned request (`verifyPresignedSigV4`, the gateway's
 * SigV4 code) against the local credentials, and answers with the identity the access key belongs
 * to, as STS does:
 *
 * - a role: `arn:aws:sts::ACCT:assumed-role/NAME/SESSION`, `UserId` `AROA…:SESSION`;
 * - a user: `arn:aws:iam::ACCT:user/PATH/NAME`, `UserId` `AIDA…`.
 *
 * Only `GET /` with `Action=GetCallerIdentity&Version=2011-06-15` and presigned (query-string)
 * authentication is served. STS accepts a presigned GetCallerIdentity for 15 minutes after
 * `X-Amz-Date` whatever `X-Amz-Expires` says (kubernetes-sigs/aws-iam-authenticator
 * `pkg/token/token.go`, aws-sdk-go#2167), and so does this stand-in: the vendor must enforce its
 * own shorter window.
 *
 * Success bodies: JSON when the request sends `Accept: application/json` (the shape
 * aws-iam-authenticator parses: `GetCallerIdentityResponse.GetCallerIdentityResult`), XML otherwise
 * (the example in the STS API Reference, GetCallerIdentity). Error codes and statuses follow the
 * STS API Reference "Common Errors" page (MissingAuthenticationToken 403, InvalidClientTokenId 403,
 * IncompleteSignature 400, InvalidAction 400, MissingAction 400, Throttling 400, ServiceUnavailable
 * 503) and STS's well-known `SignatureDoesNotMatch` 403.
 *
 * Test switches, like the Auth0 stand-in's: `setFault('outage' | 'throttle' | 'hang' | null)`, and
 * counters (`calls()`, `callsBy(arn)`) so a test can assert that no STS call was made.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseQuery, splitUrl, verifyPresignedSigV4, type LocalCredential, type SigV4Failure } from './sigv4.js';
import { closerOf, listenOnLoopback } from './loopbackServer.js';

export type { LocalCredential } from './sigv4.js';

/** STS's window for a presigned GetCallerIdentity, whatever X-Amz-Expires says (aws-iam-authenticator pkg/token/token.go). */
export const STS_PRESIGNED_VALIDITY_MS = 15 * 60_000;
const MAX_BODY_BYTES = 16 * 1024;
const XML_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const ROLE_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role\/((?:[\w+=,.@-]+\/)*)([\w+=,.@-]{1,64})$/;
const USER_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):user\/((?:[\w+=,.@-]+\/)*)([\w+=,.@-]{1,64})$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;
/** IAM unique ids: a 4-letter prefix (AROA role, AIDA user) and upper-case letters and digits. */
const UNIQUE_ID = /^A[A-Z]{3}[A-Z0-9]{12,124}$/;

export interface LocalStsOptions {
  /** the keys STS knows, and whose they are (the same list the local gateway takes) */
  credentials: LocalCredential[];
  /** the region the stand-in serves: a proof must be scoped to `sts` in it */
  region: string;
  /** 0 (the default) picks a free port */
  port?: number;
  /** injectable clock for tests; default the system clock */
  now?: () => Date;
}

/**
 * null: answer normally. 'outage': 503 ServiceUnavailable. 'throttle': 400 Throttling ("Rate
 * exceeded"). 'hang': never answer (until the caller gives up, or close()). Every request is still
 * counted by `calls()`.
 */
export type StsFault = null | 'outage' | 'throttle' | 'hang';

/** What GetCallerIdentity returns. */
export interface StsCallerIdentity {
  Account: string;
  Arn: string;
  UserId: string;
}

export interface LocalSts {
  /** `http://127.0.0.1:PORT`: the vendor's STS_ENDPOINT, and the origin proofs are presigned for */
  readonly origin: string;
  readonly port: number;
  readonly region: string;
  /** requests received since start or the last reset, every outcome (refused, faulted, hung) included */
  calls(): number;
  /**
   * GetCallerIdentity calls answered with this identity: a session ARN (`…:assumed-role/NAME/SESSION`)
   * or user ARN counts that identity; a role ARN (`arn:aws:iam::ACCT:role/NAME`) counts all its sessions.
   */
  callsBy(arn: string): number;
  resetCounters(): void;
  setFault(fault: StsFault): void;
  /**
   * The clock the signature window is checked against: a test whose vendor runs on a test clock,
   * and signs its proofs at that clock's time, puts STS on it too; `null` goes back to the clock
   * given at start (the system clock by default).
   */
  setNow(now: (() => Date) | null): void;
  /** the credential whose GetCallerIdentity answer has this `Arn` (session or user ARN); undefined if none */
  credentialFor(arn: string): LocalCredential | undefined;
  /** closes every socket, hung ones included */
  close(): Promise<void>;
}

/**
 * The identity STS reports for a credential's owner. An assumed role appears as its session ARN,
 * which drops the role's path (IAM User Guide, "IAM identifiers": role session ARNs). Throws for a
 * principal ARN that is neither a role nor a user, or a session name STS would refuse.
 */
export function stsCallerIdentity(credential: LocalCredential): StsCallerIdentity {
  const role = ROLE_ARN.exec(credential.principalArn);
  if (role !== null) {
    const [, partition = '', account = '', , name = ''] = role;
    const session = credential.sessionName ?? 'local-session';
    if (!SESSION_NAME.test(session)) throw new Error(`session name '${session}' is not a valid STS role session name`);
    const uniqueId = checkedUniqueId(credential, 'AROA');
    return { Account: account, Arn: `arn:${partition}:sts::${account}:assumed-role/${name}/${session}`, UserId: `${uniqueId}:${session}` };
  }
  const user = USER_ARN.exec(credential.principalArn);
  if (user !== null) {
    const [, , account = ''] = user;
    return { Account: account, Arn: credential.principalArn, UserId: checkedUniqueId(credential, 'AIDA') };
  }
  throw new Error(`principalArn '${credential.principalArn}' is neither an IAM role ARN nor an IAM user ARN`);
}

/**
 * A stable fake unique id for a principal: `prefix` (AROA for roles, AIDA for users) and 17
 * characters derived from the ARN, 21 in all like AWS's. The local gateway derives its
 * `requestContext.identity.caller` the same way, so both stand-ins agree by default.
 */
export function defaultUniqueId(prefix: 'AROA' | 'AIDA', principalArn: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const digest = createHash('sha256').update(principalArn).digest();
  let id = prefix;
  for (let i = 0; i < 17; i++) id += alphabet[(digest[i] ?? 0) & 31];
  return id;
}

function checkedUniqueId(credential: LocalCredential, prefix: 'AROA' | 'AIDA'): string {
  const id = credential.uniqueId ?? defaultUniqueId(prefix, credential.principalArn);
  if (!UNIQUE_ID.test(id) || !id.startsWith(prefix)) throw new Error(`uniqueId '${id}' of ${credential.principalArn} must start with ${prefix} and hold only A-Z and 0-9`);
  return id;
}

/** Start the stand-in on 127.0.0.1. Rejects for a credential that is not a role or user, a key listed twice, or a taken port. */
export async function startLocalSts(opts: LocalStsOptions): Promise<LocalSts> {
  const byKey = new Map<string, { credential: LocalCredential; identity: StsCallerIdentity }>();
  const byArn = new Map<string, LocalCredential>();
  for (const credential of opts.credentials) {
    if (byKey.has(credential.accessKeyId)) throw new Error(`access key ID ${credential.accessKeyId} is listed twice`);
    const identity = stsCallerIdentity(credential);
    byKey.set(credential.accessKeyId, { credential, identity });
    if (!byArn.has(identity.Arn)) byArn.set(identity.Arn, credential);
  }

  let fault: StsFault = null;
  let calls = 0;
  const answeredBy = new Map<string, number>();
  const startClock = opts.now ?? (() => new Date());
  let clock = startClock;
  const now = (): Date => clock();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    calls += 1;
    const requestId = randomUUID();
    const json = wantsJson(req);
    const reply = (status: number, code: string, message: string, extra: Record<string, string> = {}): void =>
      sendError(res, { status, code, message, requestId, json, headers: extra });

    if (fault === 'hang') return; // closeAllConnections() in close() ends it
    if (fault === 'outage') return reply(503, 'ServiceUnavailable', 'The request has failed due to a temporary failure of the server.');
    if (fault === 'throttle') return reply(400, 'Throttling', 'Rate exceeded');

    const body = await readBody(req);
    if (body === undefined) return reply(413, 'RequestEntityTooLarge', `The request body exceeds ${MAX_BODY_BYTES} bytes.`, { connection: 'close' });
    const rawUrl = req.url ?? '/';
    const { path, query } = splitUrl(rawUrl);
    if (req.method !== 'GET') return reply(405, 'InvalidAction', 'The local STS serves only GET / (a presigned GetCallerIdentity).', { allow: 'GET' });
    if (path !== '/') return reply(404, 'InvalidAction', 'The local STS serves only GET / (a presigned GetCallerIdentity).');
    const params = parseQuery(query);
    if (params === undefined) return reply(400, 'MalformedQueryString', 'The query string is not valid percent-encoding.');
    const actions = params.filter(([name]) => name === 'Action').map(([, value]) => value);
    const versions = params.filter(([name]) => name === 'Version').map(([, value]) => value);
    if (actions.length === 0) return reply(400, 'MissingAction', 'Missing Action');
    if (actions.length > 1 || versions.length > 1) return reply(400, 'MalformedQueryString', 'Action and Version may each appear once.');
    if (actions[0] !== 'GetCallerIdentity') return reply(400, 'InvalidAction', `The local STS serves only GetCallerIdentity, not ${JSON.stringify((actions[0] ?? '').slice(0, 64))}.`);
    if (versions[0] !== '2011-06-15') {
      return reply(400, 'InvalidAction', `Could not find operation GetCallerIdentity for version ${(versions[0] ?? 'NO_VERSION_SPECIFIED').slice(0, 32)}`);
    }

    const verdict = verifyPresignedSigV4(
      { method: req.method, url: rawUrl, headers: req.headersDistinct, body },
      { lookup: (akid) => byKey.get(akid)?.credential, region: opts.region, service: 'sts', now, validityMs: STS_PRESIGNED_VALIDITY_MS },
    );
    if (!verdict.ok) {
      const [status, code] = REFUSALS[verdict.failure];
      return reply(status, code, verdict.failure === 'unknown_key' ? 'The security token included in the request is invalid.' : verdict.message);
    }
    const entry = byKey.get(verdict.credential.accessKeyId);
    if (entry === undefined) throw new Error('verified a key with no identity');
    const { identity, credential } = entry;
    for (const arn of new Set([identity.Arn, credential.principalArn])) answeredBy.set(arn, (answeredBy.get(arn) ?? 0) + 1);
    sendIdentity(res, identity, requestId, json);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      console.error('local STS: unexpected failure', error);
      if (!res.headersSent) sendError(res, { status: 500, code: 'InternalFailure', message: 'Internal failure', requestId: randomUUID(), json: wantsJson(req), headers: {} });
      else res.destroy();
    });
  });
  const port = await listenOnLoopback(server, opts.port ?? 0);
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    region: opts.region,
    calls: () => calls,
    callsBy: (arn) => answeredBy.get(arn) ?? 0,
    resetCounters: () => {
      calls = 0;
      answeredBy.clear();
    },
    setFault: (next) => {
      fault = next;
    },
    setNow: (next) => {
      clock = next ?? startClock;
    },
    credentialFor: (arn) => byArn.get(arn),
    close: closerOf(server),
  };
}

/** How each verification failure is answered: status and STS error code. */
const REFUSALS: Record<SigV4Failure, [number, string]> = {
  missing: [403, 'MissingAuthenticationToken'],
  malformed: [400, 'IncompleteSignature'],
  unknown_key: [403, 'InvalidClientTokenId'],
  wrong_scope: [403, 'SignatureDoesNotMatch'],
  // STS reports an expired presigned request as SignatureDoesNotMatch "Signature expired: ...".
  stale: [403, 'SignatureDoesNotMatch'],
  signature_mismatch: [403, 'SignatureDoesNotMatch'],
};

function wantsJson(req: IncomingMessage): boolean {
  return (req.headersDistinct.accept ?? []).some((value) => /(^|[\s,])application\/json\b/i.test(value));
}

function sendIdentity(res: ServerResponse, identity: StsCallerIdentity, requestId: string, json: boolean): void {
  if (json) {
    send(res, 200, requestId, 'application/json', {
      GetCallerIdentityResponse: {
        GetCallerIdentityResult: { Account: identity.Account, Arn: identity.Arn, UserId: identity.UserId },
        ResponseMetadata: { RequestId: requestId },
      },
    });
    return;
  }
  send(
    res,
    200,
    requestId,
    'text/xml',
    `<GetCallerIdentityResponse xmlns="${XML_NS}">\n  <GetCallerIdentityResult>\n    <Arn>${xml(identity.Arn)}</Arn>\n    <UserId>${xml(identity.UserId)}</UserId>\n    <Account>${xml(identity.Account)}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>${requestId}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n`,
  );
}

interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
  requestId: string;
  json: boolean;
  headers: Record<string, string>;
}

function sendError(res: ServerResponse, answer: ErrorAnswer): void {
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  const type = answer.status >= 500 ? 'Receiver' : 'Sender';
  if (answer.json) {
    // The exact JSON error body STS sends is not pinned by any public source (docs/identity-proof.md
    // says so too); this is the XML error's fields in JSON. The vendor decides on status and code only.
    send(res, answer.status, answer.requestId, 'application/json', { Error: { Code: answer.code, Message: answer.message, Type: type }, RequestId: answer.requestId });
    return;
  }
  send(
    res,
    answer.status,
    answer.requestId,
    'text/xml',
    `<ErrorResponse xmlns="${XML_NS}">\n  <Error>\n    <Type>${type}</Type>\n    <Code>${xml(answer.code)}</Code>\n    <Message>${xml(answer.message)}</Message>\n  </Error>\n  <RequestId>${answer.requestId}</RequestId>\n</ErrorResponse>\n`,
  );
}

function send(res: ServerResponse, status: number, requestId: string, contentType: string, body: unknown): void {
  res.statusCode = status;
  res.setHeader('x-amzn-RequestId', requestId);
  res.setHeader('content-type', contentType);
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

function xml(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The body, or `undefined` once it exceeds the cap (the rest is drained, not kept). */
function readBody(req: IncomingMessage): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

