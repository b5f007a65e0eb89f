/**
 * Realistic API Gateway REST (v1 proxy) events, as API Gateway sends them with AWS_IAM auth, and
 * direct-invocation events, each carrying the identity proof a real caller sends
 * (docs/identity-proof.md).
 *
 * Proofs: a test stack (testStack.ts) registers its STS stand-in's signer here, so `apiEvent()`
 * adds a valid `X-Token-Vendor-Proof` for the event's `userArn`, bound to the body's audience,
 * scope and organization, whenever the stack holds a credential for that principal, and `directEvent()` does the
 * same for `as`. The most recently started stack that is still open signs (a file may run a second
 * stack inside a test). The signer also travels to child processes the test spawns with
 * `process.env` (vendorProcess.ts), through one test-only environment variable.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { PROOF_HEADER, presignProof } from '../../local/stsProof.js';

/** What a stack's signer needs: its STS stand-in, its server id, and one key per caller identity. */
export interface ProofSignerConfig {
  stsOrigin: string;
  region: string;
  serverId: string;
  /** the ARN STS answers for each key (a role session ARN or a user ARN) → that key */
  credentials: Record<string, { accessKeyId: string; secretAccessKey: string; sessionToken?: string }>;
}

/** The environment variable that hands the current signer to child processes (test-only keys). */
export const PROOF_SIGNER_ENV = 'TOKEN_VENDOR_TEST_PROOF_SIGNER';

const signers: ProofSignerConfig[] = [];
let inherited: ProofSignerConfig | undefined;
const fromParent = process.env[PROOF_SIGNER_ENV];
if (fromParent !== undefined && fromParent !== '') inherited = JSON.parse(fromParent) as ProofSignerConfig;

/**
 * Make `config` the signer of every event built from now on, until the returned function removes
 * it (testStack.ts calls it from close()).
 */
export function registerProofSigner(config: ProofSignerConfig): () => void {
  signers.push(config);
  process.env[PROOF_SIGNER_ENV] = JSON.stringify(config);
  return () => {
    const index = signers.lastIndexOf(config);
    if (index !== -1) signers.splice(index, 1);
    const current = signers.at(-1) ?? inherited;
    if (current === undefined) delete process.env[PROOF_SIGNER_ENV];
    else process.env[PROOF_SIGNER_ENV] = JSON.stringify(current);
  };
}

function currentSigner(): ProofSignerConfig | undefined {
  return signers.at(-1) ?? inherited;
}

/**
 * A proof for `arn` bound to (`audience`, `scope`, `organization`), signed at `at` (default now);
 * undefined when no stack is registered or it holds no credential for `arn`. `organization` is
 * last so that the callers written before organizations (issue 12) keep their meaning.
 */
export function proofFor(arn: string, audience: string, scope: string | undefined, at?: Date | number, organization?: string): string | undefined {
  const signer = currentSigner();
  const credential = signer?.credentials[arn];
  if (signer === undefined || credential === undefined) return undefined;
  return presignProof({
    credential,
    region: signer.region,
    stsOrigin: signer.stsOrigin,
    serverId: signer.serverId,
    audience,
    scope,
    ...(organization === undefined ? {} : { organization }),
    ...(at === undefined ? {} : { now: new Date(at) }),
  });
}

export interface EventOptions {
  body?: string | null;
  isBase64Encoded?: boolean;
  userArn?: string | null;
  method?: string;
  path?: string;
  resource?: string;
  headers?: Record<string, string>;
  /**
   * The `X-Token-Vendor-Proof` header: by default a valid proof for `userArn`, bound to the body's
   * audience, scope and organization, when the registered stack has a credential for it (none otherwise, and
   * none when the body has no string audience); `null` for no proof; a string to send that exact
   * value. A proof header in `headers` is left alone.
   */
  proof?: string | null;
  /** when the default proof is signed (default now): for a vendor that runs on a test clock */
  proofAt?: Date | number;
}

export function apiEvent(opts: EventOptions = {}): APIGatewayProxyEvent {
  const path = opts.path ?? '/token';
  const method = opts.method ?? 'POST';
  const userArn = opts.userArn === undefined ? 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0123456789abcdef0' : opts.userArn;
  const body = opts.body === undefined ? JSON.stringify({ audience: 'https://orders.example.com' }) : opts.body;
  const isBase64Encoded = opts.isBase64Encoded ?? false;
  const proof = apiProof(opts, userArn, body, isBase64Encoded);
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    Host: 'abc123.execute-api.eu-west-1.amazonaws.com',
    ...(proof === undefined ? {} : { [PROOF_HEADER]: proof }),
    ...opts.headers,
  };
  return {
    resource: opts.resource ?? (path === '/token' ? '/token' : '/{proxy+}'),
    path,
    httpMethod: method,
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: path === '/token' ? null : { proxy: path.slice(1) },
    stageVariables: null,
    body,
    isBase64Encoded,
    requestContext: {
      accountId: '111122223333',
      apiId: 'abc123',
      authorizer: null,
      protocol: 'HTTP/1.1',
      httpMethod: method,
      path: `/prod${path}`,
      stage: 'prod',
      requestId: 'c6af9ac6-7b61-11e6-9a41-93e8deadbeef',
      requestTimeEpoch: 1_700_000_000_000,
      resourceId: 'abcdef',
      resourcePath: path === '/token' ? '/token' : '/{proxy+}',
      identity: {
        accessKey: 'ASIAEXAMPLE',
        accountId: userArn === null ? null : '111122223333',
        apiKey: null,
        apiKeyId: null,
        caller: userArn === null ? null : 'AROAEXAMPLEID:i-0123456789abcdef0',
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: '10.0.0.1',
        user: userArn === null ? null : 'AROAEXAMPLEID:i-0123456789abcdef0',
        userAgent: 'token-vendor-client',
        userArn,
      },
    },
  } as APIGatewayProxyEvent;
}

/** The default proof of an API event: for its caller, bound to what its body asks for. */
function apiProof(opts: EventOptions, userArn: string | null, body: string | null, isBase64Encoded: boolean): string | undefined {
  if (opts.proof !== undefined) return opts.proof ?? undefined;
  if (Object.keys(opts.headers ?? {}).some((name) => name.toLowerCase() === PROOF_HEADER.toLowerCase())) return undefined;
  if (userArn === null || body === null) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(isBase64Encoded ? Buffer.from(body, 'base64').toString('utf8') : body);
  } catch {
    return undefined; // the vendor refuses the body before it looks at a proof
  }
  if (typeof doc !== 'object' || doc === null) return undefined;
  const { audience, scope, organization } = doc as Record<string, unknown>;
  if (typeof audience !== 'string') return undefined;
  // A non-string organization is refused by the vendor before it looks at a proof: bind none.
  return proofFor(userArn, audience, typeof scope === 'string' ? scope : undefined, opts.proofAt, typeof organization === 'string' ? organization : undefined);
}

export interface DirectEventOptions {
  audience: string;
  scope?: string;
  /** the Auth0 organization (issue 12): sent in the event and bound into the default proof */
  organization?: string;
  /** the invoker: a role session ARN (`arn:aws:sts::ACCT:assumed-role/NAME/SESSION`) or a user ARN */
  as?: string;
  /** default: a valid proof for `as`; `null` for none; a string to send that exact value */
  proof?: string | null;
  /** when the default proof is signed (default now) */
  proofAt?: Date | number;
}

/** A direct invocation's event, `{"audience", "scope"?, "organization"?, "proof"?}`, as the client's direct mode sends it. */
export function directEvent(opts: DirectEventOptions): { audience: string; scope?: string; organization?: string; proof?: string } {
  const event: { audience: string; scope?: string; organization?: string; proof?: string } = {
    audience: opts.audience,
    ...(opts.scope === undefined ? {} : { scope: opts.scope }),
    ...(opts.organization === undefined ? {} : { organization: opts.organization }),
  };
  if (opts.proof === null) return event;
  if (opts.proof !== undefined) return { ...event, proof: opts.proof };
  if (opts.as === undefined) throw new Error('directEvent: give `as` (the invoker) for a signed proof, or `proof` (a string, or null for none)');
  const proof = proofFor(opts.as, opts.audience, opts.scope, opts.proofAt, opts.organization);
  if (proof === undefined) {
    throw new Error(`directEvent: no test stack credential for ${opts.as} (start a test stack first, or pass \`proof\` explicitly)`);
  }
  return { ...event, proof };
}
