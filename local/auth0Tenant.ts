/**
 * A local Auth0 tenant for tests and the local stack, built on panva's oidc-provider.
 *
 *   client ──► front server (origin = issuer, "Auth0's edge") ──► oidc-provider (private loopback port)
 *
 * oidc-provider does the OAuth work: client authentication (client_secret_post / _basic,
 * private_key_jwt), the client_credentials grant, JWT and opaque access tokens, the JWKS.
 *
 * The front server gives it Auth0's face. Auth0 takes JSON bodies and an `audience` parameter;
 * oidc-provider takes only form bodies and RFC 8707 `resource`. The front rewrites the request
 * before oidc-provider reads it, so oidc-provider parses a genuine request stream (handing it a
 * pre-parsed `req.body` also works, but makes it print a warning). The test hooks live in the front
 * too, because they act on the wire as a faulty network or IdP would: request counting, fault
 * injection, token tampering, Auth0's response shape.
 *
 * Auth0 policy that needs the authenticated client (client grants, default scopes, access_denied
 * being a 403) is enforced inside oidc-provider by its resourceIndicators hooks, which run after
 * client authentication, as Auth0 checks credentials before grants.
 *
 * The front also answers the part of Auth0's Management API (`/api/v2/…`) that credential rotation
 * uses: rotate-secret, client credentials (public keys for private_key_jwt) and attaching them to
 * the client. Those endpoints take the tenant's own JWTs for the Management API audience
 * `${issuer}api/v2/`, obtained with client_credentials like any other API token. They change the
 * live client table, which oidc-provider reads on every request.
 */
import { appendFileSync } from 'node:fs';
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPublicKey, randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, errors as joseErrors, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import type { JWK } from 'jose';

export type ClientAuthMethod = 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';

/** Signing algorithms Auth0 accepts for a `public_key` client credential. */
export type CredentialAlg = 'RS256' | 'RS384' | 'PS256';

/** A public key to register as an Auth0 client credential (`credential_type: 'public_key'`). */
export interface TenantCredentialInput {
  name: string;
  /** SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`), RSA, at least 2048 bits */
  pem: string;
  /** default 'RS256' */
  alg?: CredentialAlg;
}

export interface TenantClient {
  clientId: string;
  /** the application's name in Management API responses; default: the client id */
  name?: string;
  /** for client_secret_* methods */
  clientSecret?: string;
  authMethod: ClientAuthMethod;
  /**
   * public keys, for private_key_jwt (two at once allow an overlapping rotation). Bare keys: they
   * have no credential id, so the Management API does not list them. Not together with `credentials`.
   */
  jwks?: { keys: JWK[] };
  /**
   * private_key_jwt only: Auth0 client credentials, created with ids (`cred_…`) and kids (RFC 7638
   * thumbprints) and all attached to the client (`client_authentication_methods.private_key_jwt`),
   * as rotation through the Management API expects. At most 2 (Auth0's per-application limit).
   */
  credentials?: TenantCredentialInput[];
}

/** A client credential as `clientCredentials()` reports it: Auth0's fields plus whether it is attached. */
export interface TenantCredential {
  /** 'cred_…' */
  id: string;
  name: string;
  credential_type: 'public_key';
  /** RFC 7638 JWK thumbprint (SHA-256) of the public key; the kid client assertions may name */
  kid: string;
  alg: CredentialAlg;
  /** ISO 8601 */
  created_at: string;
  updated_at: string;
  /** listed in the client's `client_authentication_methods.private_key_jwt.credentials`: its key is accepted */
  attached: boolean;
}

export interface TenantApi {
  /** e.g. 'https://orders.example.com' */
  audience: string;
  /** scopes this API defines */
  scopes: string[];
  /** default 86400, like Auth0 */
  tokenTtlSeconds?: number;
  /** default 'jwt' */
  tokenFormat?: 'jwt' | 'opaque';
}

export interface TenantOptions {
  /** default 0 = pick a free loopback port */
  port?: number;
  clients: TenantClient[];
  apis: TenantApi[];
  /** client grants, as in Auth0: clientId -> audience -> scopes the client may get. No entry = access_denied. */
  clientGrants: Record<string, Record<string, string[]>>;
  /**
   * If set, append one JSON line per issued access token and per client secret the tenant knows,
   * `{"kind":"access_token"|"client_secret","value":"..."}`, for the log scan that checks no secret
   * or token leaks into logs.
   */
  recordFile?: string;
  /**
   * Register Auth0's Management API, audience `${issuer}api/v2/` (see `managementAudience`), with the
   * scopes in `MANAGEMENT_API_SCOPES`. The issuer is only known once the tenant listens, so in
   * `clientGrants` key its grant with the literal `'management'` (`MANAGEMENT_GRANT_KEY`), e.g.
   * `{ rotator: { management: ['update:client_keys'] } }`; the full audience also works when the
   * port is fixed. Without this option the API can still be declared in `apis` by its full audience.
   */
  managementApi?: boolean;
  /**
   * Milliseconds after a Management API rotate-secret during which the NEW secret is not accepted
   * yet (Auth0: up to ~30 s to propagate) while the old one is already refused: both answer 401
   * invalid_client. Default 0. `setClientSecret` is never delayed.
   */
  secretPropagationMs?: number;
}

export interface IssuedToken {
  clientId: string;
  audience: string;
  scope: string;
  /** the value the client received (tampered, if a tamper mode was on) */
  accessToken: string;
  expiresIn: number;
}

export type TamperMode = null | 'wrong-key' | 'wrong-aud';

export type TokenFault = null | 'hang' | 'drop' | { status: number; body: unknown; headers?: Record<string, string> };

export interface LocalAuth0Tenant {
  /** 'http://127.0.0.1:PORT' */
  readonly origin: string;
  /** 'http://127.0.0.1:PORT/' (Auth0 issuers end with '/') */
  readonly issuer: string;
  readonly port: number;
  /**
   * The Management API identifier, `${issuer}api/v2/` (as Auth0's `https://{domain}/api/v2/`): the
   * audience to request, whether or not the API is registered (`TenantOptions.managementApi`).
   */
  readonly managementAudience: string;
  /** number of POST /oauth/token requests received (every outcome, including failures) since start or last reset */
  tokenRequests(): number;
  /** number of Management API requests (any method under /api/v2/, every outcome) since start or last reset */
  managementRequests(): number;
  /** successful issuances */
  issued(): ReadonlyArray<IssuedToken>;
  /** resets tokenRequests(), managementRequests() and issued() */
  resetCounters(): void;
  /**
   * change a client's secret at once (Auth0's rotate-secret has no overlap). Never delayed by
   * `secretPropagationMs`, and ends a propagation delay still running.
   */
  setClientSecret(clientId: string, secret: string): void;
  /** the client's current secret (after any rotate-secret), undefined if it has none; throws for an unknown client */
  clientSecret(clientId: string): string | undefined;
  /**
   * replace a client's registered public keys (private_key_jwt) with these bare keys; every
   * Management API credential of the client is detached (they stay listed).
   */
  setClientJwks(clientId: string, jwks: { keys: JWK[] }): void;
  /** the client's Management API credentials, in creation order, with whether each is attached; throws for an unknown client */
  clientCredentials(clientId: string): TenantCredential[];
  /**
   * the propagation delay for later rotate-secret calls (see `TenantOptions.secretPropagationMs`); a
   * delay already running keeps its end (setClientSecret ends it). Throws for a negative or non-finite value.
   */
  setSecretPropagationMs(ms: number): void;
  /**
   * 'wrong-key' re-signs issued JWTs with a foreign RSA key (same kid); 'wrong-aud' re-signs them
   * with the tenant's real key but aud='https://not-the-requested-audience'. null = normal.
   * Opaque tokens are never tampered with.
   */
  setTamper(mode: TamperMode): void;
  /**
   * When set, POST /oauth/token answers this instead of issuing (still counted). 'hang' = never
   * answer until close (or until the client aborts); 'drop' = destroy the socket. A string body is
   * sent as is, anything else as JSON. null = normal.
   */
  setFault(fault: TokenFault): void;
  /** closes every socket, hung ones included */
  close(): Promise<void>;
}

/** The `clientGrants` key that stands for the Management API audience (see `TenantOptions.managementApi`). */
export const MANAGEMENT_GRANT_KEY = 'management';

/**
 * Scopes of the Management API the tenant registers with `managementApi: true`. Endpoints:
 * - `GET /api/v2/clients/{id}`: read:clients or read:client_keys (client_secret only with the latter)
 * - `PATCH /api/v2/clients/{id}` with only `client_authentication_methods`: update:client_keys
 * - `POST /api/v2/clients/{id}/rotate-secret`: update:client_keys
 * - `POST /api/v2/clients/{id}/credentials`: create:client_credentials
 * - `GET /api/v2/clients/{id}/credentials[/{credential_id}]`: read:client_keys or read:client_credentials
 * - `DELETE /api/v2/clients/{id}/credentials/{credential_id}`: delete:client_credentials
 */
export const MANAGEMENT_API_SCOPES: readonly string[] = [
  'read:clients',
  'update:client_keys',
  'read:client_keys',
  'create:client_credentials',
  'read:client_credentials',
  'update:client_credentials',
  'delete:client_credentials',
];

/** The Management API audience of a tenant: `${tenant.issuer}api/v2/`. */
export function managementAudience(tenant: { readonly issuer: string }): string {
  return `${tenant.issuer}api/v2/`;
}

const TOKEN_PATH = '/oauth/token';
const MANAGEMENT_PREFIX = '/api/v2/';
/** Auth0's limit of credentials per application. */
const MAX_CREDENTIALS = 2;
const CREDENTIAL_ALGS: readonly CredentialAlg[] = ['RS256', 'RS384', 'PS256'];
const DEFAULT_TTL_SECONDS = 86_400;
const WRONG_AUDIENCE = 'https://not-the-requested-audience';
/** Same limit as oidc-provider's own body parser. */
const MAX_BODY_BYTES = 56 * 1024;
/** Private response header: oidc-provider tells the front which client a token was issued to. */
const ISSUED_TO_HEADER = 'x-local-tenant-issued-to';
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade']);

// ---------------------------------------------------------------------------------------------
// The small part of oidc-provider's API used here (the package ships no type declarations).

interface ProviderClient {
  clientId: string;
}

interface ProviderContext {
  oidc: {
    client?: ProviderClient;
    params: { scope?: string | undefined };
  };
  set(header: string, value: string): void;
}

interface ProviderToken {
  clientId: string;
  resourceServer?: { accessTokenTTL?: number };
}

interface ProviderJwt {
  header?: Record<string, unknown>;
  payload: Record<string, unknown>;
}

interface ResourceServerInfo {
  scope: string;
  audience: string;
  accessTokenTTL: number;
  accessTokenFormat: 'jwt' | 'opaque';
  jwt: { sign: { alg: 'RS256' } };
}

interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  on(event: 'grant.success', listener: (ctx: ProviderContext) => void): void;
  on(event: 'server_error', listener: (ctx: ProviderContext, err: Error) => void): void;
}

interface OidcProviderModule {
  Provider: new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
  errors: { AccessDenied: new (description: string) => Error };
}

/**
 * oidc-provider 9 prints "Unsupported runtime" when imported under Node 20 (it targets 22+). This
 * repo's engine is Node >= 20.19 and everything the tenant uses works there (its tests prove it),
 * so that one line is dropped to keep output clean; any other warning passes through.
 */
async function loadOidcProvider(): Promise<OidcProviderModule> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (!String(args[0]).includes('Unsupported runtime')) warn(...args);
  };
  try {
    // @ts-expect-error -- oidc-provider ships no type declarations; its used surface is typed above.
    return (await import('oidc-provider')) as OidcProviderModule;
  } finally {
    console.warn = warn;
  }
}

/**
 * Minimal in-memory storage for oidc-provider's models. Clients come from the tenant's live client
 * table, so secret and key changes apply to the very next request (oidc-provider caches clients by
 * a hash of their metadata). Other models (opaque tokens, client-assertion jti replay detection)
 * are kept until they expire. Providing an adapter also avoids oidc-provider's dev-adapter warning.
 */
function createAdapterClass(clientMetadata: (clientId: string) => Record<string, unknown> | undefined) {
  const store = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  return class TenantAdapter {
    readonly #model: string;

    constructor(model: string) {
      this.#model = model;
    }

    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
      const expiresAt = expiresIn === undefined ? Infinity : Date.now() + expiresIn * 1000;
      store.set(`${this.#model}:${id}`, { payload, expiresAt });
    }

    async find(id: string): Promise<Record<string, unknown> | undefined> {
      if (this.#model === 'Client') return clientMetadata(id);
      const key = `${this.#model}:${id}`;
      const entry = store.get(key);
      if (entry === undefined) return undefined;
      if (entry.expiresAt <= Date.now()) {
        store.delete(key);
        return undefined;
      }
      return entry.payload;
    }

    async destroy(id: string): Promise<void> {
      store.delete(`${this.#model}:${id}`);
    }
  };
}

/** An OAuth error answered by the front server itself. */
class FrontError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
  ) {
    super(description);
  }
}

const HTTP_ERROR_NAMES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
};

/** A Management API error, answered in Auth0's shape `{statusCode, error, message, errorCode?}`. */
class ManagementError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorCode?: string,
  ) {
    super(message);
  }

  toJSON(): Record<string, unknown> {
    return {
      statusCode: this.status,
      error: HTTP_ERROR_NAMES[this.status] ?? 'Error',
      message: this.message,
      ...(this.errorCode === undefined ? {} : { errorCode: this.errorCode }),
    };
  }
}

const invalidBody = (detail: string): ManagementError => new ManagementError(400, `Payload validation error: ${detail}`, 'invalid_body');

interface Upstream {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** An Auth0 client credential (public key) of a client. */
interface CredentialState {
  readonly id: string;
  readonly name: string;
  readonly alg: CredentialAlg;
  readonly kid: string;
  /** the public key as oidc-provider receives it: with kid and alg */
  readonly jwk: JWK;
  readonly createdAt: string;
}

/** A client of the live client table. */
interface ClientState {
  readonly clientId: string;
  readonly name: string;
  readonly authMethod: ClientAuthMethod;
  clientSecret: string | undefined;
  /** after a rotate-secret with a propagation delay, the secret is refused until this time (ms) */
  secretAcceptedFrom: number;
  /** what oidc-provider gets as the secret until then: a random value nobody is told */
  pendingSecret: string;
  /** bare public keys (TenantClient.jwks, setClientJwks), accepted besides the attached credentials */
  jwks: { keys: JWK[] } | undefined;
  credentials: CredentialState[];
  /** ids of the attached credentials (client_authentication_methods.private_key_jwt.credentials) */
  attached: string[];
}

interface ManagementResult {
  status: number;
  /** undefined = empty body */
  body?: unknown;
}

export async function startLocalAuth0Tenant(opts: TenantOptions): Promise<LocalAuth0Tenant> {
  let propagationMs = checkedDelay(opts.secretPropagationMs ?? 0);
  const apis = new Map(opts.apis.map((api) => [api.audience, api]));
  const clients = new Map<string, ClientState>();
  for (const client of opts.clients) clients.set(client.clientId, await initialClientState(client));

  const record = (kind: 'access_token' | 'client_secret', value: string): void => {
    if (opts.recordFile) appendFileSync(opts.recordFile, `${JSON.stringify({ kind, value })}\n`);
  };

  const [oidcProvider, signingKeys, foreignKeys] = await Promise.all([
    loadOidcProvider(),
    generateKeyPair('RS256', { extractable: true }),
    generateKeyPair('RS256'),
  ]);
  const kid = randomUUID();
  const signingJwk = { ...(await exportJWK(signingKeys.privateKey)), kid, alg: 'RS256', use: 'sig' };

  let requestCount = 0;
  let managementCount = 0;
  let issuedTokens: IssuedToken[] = [];
  let tamperMode: TamperMode = null;
  let fault: TokenFault = null;

  // The issuer embeds the port, so the front server listens before the provider exists; requests
  // that race in meanwhile wait for it.
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  const front = createServer((req, res) => {
    ready.then(() => handleFront(req, res)).catch((err: unknown) => {
      console.error(`local Auth0 tenant: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: 'local tenant failure' });
      else res.destroy();
    });
  });
  const port = await listen(front, opts.port ?? 0);
  const origin = `http://127.0.0.1:${port}`;
  const issuer = `${origin}/`;
  const mgmtAudience = managementAudience({ issuer });

  let inner: Server;
  let innerPort: number;
  let clientGrants: TenantOptions['clientGrants'];
  try {
    if (opts.managementApi) {
      if (apis.has(mgmtAudience)) throw new Error(`the Management API ${mgmtAudience} is both declared in apis and requested by managementApi`);
      apis.set(mgmtAudience, { audience: mgmtAudience, scopes: [...MANAGEMENT_API_SCOPES] });
    }
    clientGrants = resolveGrants(opts.clientGrants, mgmtAudience);
    validateGrants(clientGrants, clients, apis);
    const provider = createProvider(oidcProvider, issuer, signingJwk, {
      apis,
      clientGrants,
      clientMetadata: (clientId) => {
        const client = clients.get(clientId);
        return client && providerMetadata(client);
      },
    });
    inner = createServer(provider.callback());
    innerPort = await listen(inner, 0);
  } catch (err) {
    await closeServer(front);
    throw err;
  }
  for (const client of clients.values()) {
    if (client.clientSecret !== undefined) record('client_secret', client.clientSecret);
  }
  const agent = new Agent({ keepAlive: true });
  markReady();

  function forward(req: IncomingMessage, headers: OutgoingHttpHeaders, body: Buffer): Promise<Upstream> {
    return new Promise((resolve, reject) => {
      const upstreamReq = httpRequest(
        { host: '127.0.0.1', port: innerPort, method: req.method, path: req.url, headers: { ...headers, 'content-length': body.length }, agent },
        (upstreamRes) => {
          const chunks: Buffer[] = [];
          upstreamRes.on('data', (chunk: Buffer) => chunks.push(chunk));
          upstreamRes.on('end', () => resolve({ status: upstreamRes.statusCode ?? 502, headers: upstreamRes.headers, body: Buffer.concat(chunks) }));
          upstreamRes.on('error', reject);
        },
      );
      upstreamReq.on('error', reject);
      upstreamReq.end(body);
    });
  }

  async function handleFront(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const pathname = new URL(req.url ?? '/', origin).pathname;
    if (pathname.startsWith(MANAGEMENT_PREFIX) || pathname === MANAGEMENT_PREFIX.slice(0, -1)) {
      await handleManagement(req, res, pathname);
      return;
    }
    const isTokenRequest = req.method === 'POST' && pathname === TOKEN_PATH;
    if (!isTokenRequest) {
      const upstream = await forward(req, endToEndHeaders(req.headers), await readBody(req));
      send(res, upstream.status, upstream.headers, upstream.body);
      return;
    }

    requestCount += 1;
    const currentFault = fault;
    if (currentFault === 'hang') return;
    if (currentFault === 'drop') {
      req.socket.destroy();
      return;
    }
    if (currentFault) {
      const isText = typeof currentFault.body === 'string';
      const body = Buffer.from(isText ? String(currentFault.body) : JSON.stringify(currentFault.body));
      const contentType = isText ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8';
      send(res, currentFault.status, { 'content-type': contentType, ...currentFault.headers }, body);
      return;
    }

    let form: URLSearchParams | undefined;
    let raw: Buffer;
    try {
      raw = await readBody(req);
      form = toAuth0Form(req.headers['content-type'], raw);
    } catch (err) {
      if (!(err instanceof FrontError)) throw err;
      sendJson(res, err.status, { error: err.error, error_description: err.description });
      return;
    }
    // A content type the front does not translate goes through unchanged: oidc-provider then
    // answers with its own OAuth-shaped invalid_request.
    const headers = { ...endToEndHeaders(req.headers), accept: 'application/json' };
    const upstream = form
      ? await forward(req, { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from(form.toString()))
      : await forward(req, headers, raw);

    const clientId = upstream.headers[ISSUED_TO_HEADER];
    delete upstream.headers[ISSUED_TO_HEADER];
    if (upstream.status !== 200 || typeof clientId !== 'string') {
      send(res, upstream.status, upstream.headers, upstream.body);
      return;
    }

    const issued = JSON.parse(upstream.body.toString('utf8')) as {
      access_token: string;
      expires_in: number;
      scope?: string;
      token_type: string;
    };
    const accessToken = await tamper(issued.access_token);
    const scope = issued.scope ?? '';
    issuedTokens.push({ clientId, audience: form?.get('resource') ?? '', scope, accessToken, expiresIn: issued.expires_in });
    record('access_token', accessToken);
    // Auth0's exact success shape and key order.
    const body = { access_token: accessToken, expires_in: issued.expires_in, scope, token_type: issued.token_type };
    send(res, 200, upstream.headers, Buffer.from(JSON.stringify(body)));
  }

  async function tamper(accessToken: string): Promise<string> {
    const mode = tamperMode;
    if (mode === null || accessToken.split('.').length !== 3) return accessToken;
    const header = { ...decodeProtectedHeader(accessToken), alg: 'RS256' };
    const payload = decodeJwt(accessToken);
    return mode === 'wrong-key'
      ? new SignJWT(payload).setProtectedHeader(header).sign(foreignKeys.privateKey)
      : new SignJWT({ ...payload, aud: WRONG_AUDIENCE }).setProtectedHeader(header).sign(signingKeys.privateKey);
  }

  // -------------------------------------------------------------------------------------------
  // Management API

  async function handleManagement(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    managementCount += 1;
    let result: ManagementResult;
    try {
      result = await manage(req, pathname);
    } catch (err) {
      const failure = err instanceof FrontError ? new ManagementError(err.status, err.description) : err;
      if (!(failure instanceof ManagementError)) throw failure;
      sendJson(res, failure.status, failure.toJSON());
      return;
    }
    if (result.body === undefined) send(res, result.status, {}, Buffer.alloc(0));
    else sendJson(res, result.status, result.body);
  }

  async function manage(req: IncomingMessage, pathname: string): Promise<ManagementResult> {
    const raw = await readBody(req);
    const route = managementRoute(req.method ?? 'GET', pathname);
    if (!route) throw new ManagementError(404, 'Not Found');
    const scopes = await authenticate(req.headers.authorization, route.scopes);
    const client = clients.get(route.clientId);
    if (!client) throw new ManagementError(404, 'The client does not exist', 'inexistent_client');
    const body = (): Record<string, unknown> => jsonBody(req.headers['content-type'], raw);

    switch (route.action) {
      case 'get-client':
        return { status: 200, body: clientJson(client, scopes.has('read:client_keys')) };
      case 'patch-client':
        attachCredentials(client, body());
        return { status: 200, body: clientJson(client, scopes.has('read:client_keys')) };
      case 'rotate-secret':
        rotateSecret(client);
        return { status: 200, body: clientJson(client, true) };
      case 'create-credential':
        return { status: 201, body: credentialJson(await createCredential(client, body())) };
      case 'list-credentials':
        return { status: 200, body: client.credentials.map(credentialJson) };
      case 'get-credential':
        return { status: 200, body: credentialJson(knownCredential(client, route.credentialId)) };
      case 'delete-credential':
        deleteCredential(client, route.credentialId);
        return { status: 204 };
    }
  }

  /** Verifies a Management API bearer token as Auth0 does; returns its scopes. */
  async function authenticate(authorization: string | undefined, anyOf: readonly string[]): Promise<Set<string>> {
    if (authorization === undefined || authorization === '') throw new ManagementError(401, 'Missing authentication');
    const token = /^Bearer +(\S+) *$/i.exec(authorization)?.[1];
    if (token === undefined) throw new ManagementError(401, 'Bad HTTP authentication header format');
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, signingKeys.publicKey, {
        issuer,
        audience: mgmtAudience,
        algorithms: ['RS256'],
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw new ManagementError(401, tokenErrorMessage(err));
    }
    const scopes = new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []);
    if (!anyOf.some((scope) => scopes.has(scope))) {
      throw new ManagementError(403, `Insufficient scope, expected any of: ${anyOf.join(',')}`, 'insufficient_scope');
    }
    return scopes;
  }

  function rotateSecret(client: ClientState): void {
    if (client.authMethod === 'private_key_jwt' || client.clientSecret === undefined) {
      throw new ManagementError(400, 'Cannot rotate the secret of a client that authenticates with private_key_jwt');
    }
    const secret = randomBytes(48).toString('base64url');
    client.clientSecret = secret;
    client.pendingSecret = randomBytes(32).toString('base64url');
    client.secretAcceptedFrom = Date.now() + propagationMs;
    record('client_secret', secret);
  }

  async function createCredential(client: ClientState, body: Record<string, unknown>): Promise<CredentialState> {
    const unknownFields = Object.keys(body).filter((field) => !['credential_type', 'name', 'pem', 'alg'].includes(field));
    if (unknownFields.length > 0) throw invalidBody(`Additional properties not allowed: ${unknownFields.join(',')}`);
    if (body.credential_type !== 'public_key') {
      throw invalidBody(`credential_type must be 'public_key' (the only type the local tenant supports)`);
    }
    if (body.name !== undefined && typeof body.name !== 'string') throw invalidBody('name must be a string');
    if (typeof body.pem !== 'string') throw invalidBody('Missing required property: pem');
    if (body.alg !== undefined && !CREDENTIAL_ALGS.includes(body.alg as CredentialAlg)) {
      throw invalidBody(`alg must be one of ${CREDENTIAL_ALGS.join(', ')}`);
    }
    if (client.credentials.length >= MAX_CREDENTIALS) {
      throw new ManagementError(409, `The client already has ${MAX_CREDENTIALS} credentials, the maximum; delete an unused one first`);
    }
    const credential = await newCredential(body.name ?? '', body.pem, (body.alg as CredentialAlg | undefined) ?? 'RS256');
    if (client.credentials.some((existing) => existing.kid === credential.kid)) {
      throw new ManagementError(409, 'The client already has a credential with this public key');
    }
    client.credentials.push(credential);
    return credential;
  }

  function attachCredentials(client: ClientState, body: Record<string, unknown>): void {
    const unknownFields = Object.keys(body).filter((field) => field !== 'client_authentication_methods');
    if (unknownFields.length > 0) {
      throw invalidBody(`the local tenant updates only client_authentication_methods, not: ${unknownFields.join(',')}`);
    }
    const methods = body.client_authentication_methods;
    const pkjwt = isObject(methods) ? methods.private_key_jwt : undefined;
    const list = isObject(pkjwt) ? pkjwt.credentials : undefined;
    if (!isObject(methods) || Object.keys(methods).some((method) => method !== 'private_key_jwt') || !Array.isArray(list)) {
      throw invalidBody('expected client_authentication_methods: { private_key_jwt: { credentials: [{ id }, …] } }');
    }
    if (client.authMethod !== 'private_key_jwt') {
      throw new ManagementError(400, `Client ${client.clientId} authenticates with ${client.authMethod}, not private_key_jwt`);
    }
    if (list.length < 1 || list.length > MAX_CREDENTIALS) {
      throw invalidBody(`private_key_jwt.credentials must hold 1 to ${MAX_CREDENTIALS} items, got ${list.length}`);
    }
    const ids = list.map((item: unknown) => {
      if (!isObject(item) || typeof item.id !== 'string' || Object.keys(item).length !== 1) throw invalidBody('each credential must be { id }');
      if (!client.credentials.some((credential) => credential.id === item.id)) {
        throw invalidBody(`credential ${item.id} does not belong to client ${client.clientId}`);
      }
      return item.id;
    });
    if (new Set(ids).size !== ids.length) throw invalidBody('private_key_jwt.credentials has duplicate ids');
    client.attached = ids;
    client.jwks = undefined;
  }

  function deleteCredential(client: ClientState, credentialId: string): void {
    const credential = knownCredential(client, credentialId);
    if (client.attached.includes(credential.id)) {
      throw new ManagementError(
        409,
        `Credential ${credential.id} is in use by client_authentication_methods.private_key_jwt; detach it from the client first`,
      );
    }
    client.credentials = client.credentials.filter((existing) => existing !== credential);
  }

  let closing: Promise<void> | undefined;
  return {
    origin,
    issuer,
    port,
    managementAudience: mgmtAudience,
    tokenRequests: () => requestCount,
    managementRequests: () => managementCount,
    issued: () => [...issuedTokens],
    resetCounters: () => {
      requestCount = 0;
      managementCount = 0;
      issuedTokens = [];
    },
    setClientSecret: (clientId, secret) => {
      const client = knownClient(clients, clientId);
      client.clientSecret = secret;
      client.secretAcceptedFrom = 0;
      record('client_secret', secret);
    },
    clientSecret: (clientId) => knownClient(clients, clientId).clientSecret,
    setClientJwks: (clientId, jwks) => {
      const client = knownClient(clients, clientId);
      client.jwks = jwks;
      client.attached = [];
    },
    clientCredentials: (clientId) => {
      const client = knownClient(clients, clientId);
      return client.credentials.map((credential) => ({ ...credentialJson(credential), attached: client.attached.includes(credential.id) }));
    },
    setSecretPropagationMs: (ms) => {
      propagationMs = checkedDelay(ms);
    },
    setTamper: (mode) => {
      tamperMode = mode;
    },
    setFault: (next) => {
      fault = next;
    },
    close: () => {
      closing ??= (async () => {
        await Promise.all([closeServer(front), closeServer(inner)]);
        agent.destroy();
      })();
      return closing;
    },
  };
}

type ManagementAction =
  | 'get-client'
  | 'patch-client'
  | 'rotate-secret'
  | 'create-credential'
  | 'list-credentials'
  | 'get-credential'
  | 'delete-credential';

interface ManagementRoute {
  action: ManagementAction;
  /** the token needs any one of these */
  scopes: readonly string[];
  clientId: string;
  credentialId: string;
}

const READ_CREDENTIALS = ['read:client_keys', 'read:client_credentials'];

/** The Management API endpoint a request is for (see MANAGEMENT_API_SCOPES), or undefined. */
function managementRoute(method: string, pathname: string): ManagementRoute | undefined {
  let segments: string[];
  try {
    segments = pathname.slice(MANAGEMENT_PREFIX.length).split('/').map(decodeURIComponent);
  } catch {
    return undefined;
  }
  const [collection, clientId, sub, credentialId = '', ...rest] = segments;
  if (collection !== 'clients' || !clientId || rest.length > 0) return undefined;
  const route = (action: ManagementAction, scopes: readonly string[]): ManagementRoute => ({ action, scopes, clientId, credentialId });
  if (sub === undefined) {
    if (method === 'GET') return route('get-client', ['read:clients', 'read:client_keys']);
    if (method === 'PATCH') return route('patch-client', ['update:client_keys']);
  } else if (sub === 'rotate-secret' && segments.length === 3) {
    if (method === 'POST') return route('rotate-secret', ['update:client_keys']);
  } else if (sub === 'credentials' && segments.length === 3) {
    if (method === 'GET') return route('list-credentials', READ_CREDENTIALS);
    if (method === 'POST') return route('create-credential', ['create:client_credentials']);
  } else if (sub === 'credentials' && credentialId !== '') {
    if (method === 'GET') return route('get-credential', READ_CREDENTIALS);
    if (method === 'DELETE') return route('delete-credential', ['delete:client_credentials']);
  }
  return undefined;
}

/** Auth0's messages for a rejected Management API token. */
function tokenErrorMessage(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'Expired token received for JSON Web Token validation';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'Invalid signature received for JSON Web Token validation';
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud') {
    return `Bad audience: ${[err.payload.aud ?? ''].flat().join(' ')}`;
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'iss') return 'Bad issuer';
  return 'Invalid token';
}

function jsonBody(contentType: string | undefined, raw: Buffer): Record<string, unknown> {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') throw new ManagementError(415, 'Unsupported Media Type');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new ManagementError(400, 'Invalid request payload JSON format');
  }
  if (!isObject(parsed)) throw invalidBody('the request body must be a JSON object');
  return parsed;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function knownCredential(client: ClientState, credentialId: string): CredentialState {
  const credential = client.credentials.find((existing) => existing.id === credentialId);
  if (!credential) throw new ManagementError(404, 'The credential does not exist');
  return credential;
}

/** The client as Auth0's Management API returns it (the fields this tenant has). */
function clientJson(client: ClientState, includeSecret: boolean): Record<string, unknown> {
  return {
    client_id: client.clientId,
    name: client.name,
    app_type: 'non_interactive',
    is_first_party: true,
    grant_types: ['client_credentials'],
    jwt_configuration: { alg: 'RS256', lifetime_in_seconds: 36000, secret_encoded: false },
    ...(client.authMethod === 'private_key_jwt'
      ? { client_authentication_methods: { private_key_jwt: { credentials: client.attached.map((id) => ({ id })) } } }
      : { token_endpoint_auth_method: client.authMethod }),
    ...(includeSecret && client.clientSecret !== undefined ? { client_secret: client.clientSecret } : {}),
  };
}

function credentialJson(credential: CredentialState): Omit<TenantCredential, 'attached'> {
  return {
    id: credential.id,
    name: credential.name,
    credential_type: 'public_key',
    kid: credential.kid,
    alg: credential.alg,
    created_at: credential.createdAt,
    updated_at: credential.createdAt,
  };
}

/** The client's metadata as oidc-provider reads it on every request. */
function providerMetadata(client: ClientState): Record<string, unknown> {
  const pending = Date.now() < client.secretAcceptedFrom;
  const attachedKeys = client.credentials.filter((credential) => client.attached.includes(credential.id)).map((credential) => credential.jwk);
  // A private_key_jwt client always gets a key set, even an empty one: oidc-provider answers a client
  // without one with 400 invalid_client_metadata, Auth0 with 401 invalid_client.
  const hasKeys = client.authMethod === 'private_key_jwt' || client.jwks !== undefined || client.attached.length > 0;
  return {
    client_id: client.clientId,
    client_secret: pending ? client.pendingSecret : client.clientSecret,
    token_endpoint_auth_method: client.authMethod,
    jwks: hasKeys ? { keys: [...(client.jwks?.keys ?? []), ...attachedKeys] } : undefined,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  };
}

async function initialClientState(client: TenantClient): Promise<ClientState> {
  const credentials: CredentialState[] = [];
  if (client.credentials !== undefined) {
    const fail = (problem: string): Error => new Error(`client ${client.clientId}: ${problem}`);
    if (client.authMethod !== 'private_key_jwt') throw fail('credentials are for private_key_jwt clients');
    if (client.jwks !== undefined) throw fail('give jwks or credentials, not both');
    if (client.credentials.length > MAX_CREDENTIALS) throw fail(`at most ${MAX_CREDENTIALS} credentials`);
    for (const input of client.credentials) {
      let credential: CredentialState;
      try {
        credential = await newCredential(input.name, input.pem, input.alg ?? 'RS256');
      } catch (err) {
        throw fail(`credential ${input.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (credentials.some((existing) => existing.kid === credential.kid)) throw fail(`credential ${input.name} repeats a public key`);
      credentials.push(credential);
    }
  }
  return {
    clientId: client.clientId,
    name: client.name ?? client.clientId,
    authMethod: client.authMethod,
    clientSecret: client.clientSecret,
    secretAcceptedFrom: 0,
    pendingSecret: '',
    jwks: client.jwks,
    credentials,
    attached: credentials.map((credential) => credential.id),
  };
}

/** A credential for an SPKI PEM RSA public key; kid = its RFC 7638 thumbprint. Throws a 400 ManagementError. */
async function newCredential(name: string, pem: string, alg: CredentialAlg): Promise<CredentialState> {
  if (!pem.includes('-----BEGIN PUBLIC KEY-----')) throw invalidBody('pem must be an SPKI PEM public key (-----BEGIN PUBLIC KEY-----)');
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw invalidBody('pem is not a valid public key');
  }
  if (key.asymmetricKeyType !== 'rsa') throw invalidBody('pem must be an RSA public key');
  if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw invalidBody('the RSA key must be at least 2048 bits');
  const publicJwk = key.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
  return {
    id: credentialId(),
    name,
    alg,
    kid,
    jwk: { ...publicJwk, kid, alg, use: 'sig' },
    createdAt: new Date().toISOString(),
  };
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** 'cred_' and 22 random alphanumerics, like Auth0's credential ids. */
function credentialId(): string {
  let id = 'cred_';
  while (id.length < 27) {
    for (const byte of randomBytes(32)) {
      // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
      if (byte < 248 && id.length < 27) id += ID_ALPHABET[byte % 62];
    }
  }
  return id;
}

function checkedDelay(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`secretPropagationMs must be a finite number >= 0, got ${ms}`);
  return ms;
}

/** The grants with the `'management'` key replaced by the Management API audience. */
function resolveGrants(grants: TenantOptions['clientGrants'], mgmtAudience: string): TenantOptions['clientGrants'] {
  const resolved: TenantOptions['clientGrants'] = {};
  for (const [clientId, byAudience] of Object.entries(grants)) {
    const audiences: Record<string, string[]> = {};
    for (const [key, scopes] of Object.entries(byAudience)) {
      const audience = key === MANAGEMENT_GRANT_KEY ? mgmtAudience : key;
      if (Object.hasOwn(audiences, audience)) {
        throw new Error(`client grant of ${clientId} grants the Management API twice ('${MANAGEMENT_GRANT_KEY}' and ${mgmtAudience})`);
      }
      audiences[audience] = scopes;
    }
    resolved[clientId] = audiences;
  }
  return resolved;
}

interface TenantTables {
  apis: ReadonlyMap<string, TenantApi>;
  clientGrants: TenantOptions['clientGrants'];
  /** the live client table, read on every request */
  clientMetadata: (clientId: string) => Record<string, unknown> | undefined;
}

/** oidc-provider configured as an Auth0 tenant's client_credentials endpoint. */
function createProvider(
  { Provider, errors }: OidcProviderModule,
  issuer: string,
  signingJwk: JWK,
  { apis, clientGrants, clientMetadata }: TenantTables,
): OidcProvider {
  // oidc-provider answers access_denied with 400; Auth0 answers 403.
  const accessDenied = (description: string): Error =>
    Object.assign(new errors.AccessDenied(description), { status: 403, statusCode: 403 });

  const provider = new Provider(issuer, {
    adapter: createAdapterClass(clientMetadata),
    jwks: { keys: [signingJwk] },
    routes: { token: TOKEN_PATH, jwks: '/.well-known/jwks.json' },
    // oidc-provider's defaults plus RS384, which Auth0 accepts for client credentials.
    enabledJWA: { clientAuthSigningAlgValues: ['HS256', 'RS256', 'RS384', 'PS256', 'ES256', 'Ed25519', 'EdDSA'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // The front maps Auth0's `audience` to `resource`, so no resource means no audience.
        defaultResource: () => {
          throw accessDenied('No audience parameter was provided, and no default audience has been configured');
        },
        getResourceServerInfo: (ctx: ProviderContext, audience: string, client: ProviderClient): ResourceServerInfo => {
          const api = apis.get(audience);
          if (!api) throw accessDenied(`Service not found: ${audience}`);
          const granted = clientGrants[client.clientId]?.[audience];
          if (!granted) {
            throw accessDenied(
              `Client is not authorized to access "${audience}". You need to create a "client-grant" associated to this API.`,
            );
          }
          const { params } = ctx.oidc;
          if (params.scope === undefined) {
            // Auth0 grants every scope of the client grant when none is requested. oidc-provider's
            // client_credentials handler reads the requested scope after resolving the resource
            // (this call), so filling it in here is what puts the scopes in the token.
            params.scope = granted.join(' ') || undefined;
          } else {
            const notGranted = params.scope.split(' ').filter((scope) => scope && !granted.includes(scope));
            if (notGranted.length > 0) throw accessDenied(`Client has not been granted scopes: ${notGranted.join(', ')}`);
          }
          return {
            scope: granted.join(' '),
            audience,
            accessTokenTTL: api.tokenTtlSeconds ?? DEFAULT_TTL_SECONDS,
            accessTokenFormat: api.tokenFormat ?? 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      ClientCredentials: (_ctx: unknown, token: ProviderToken) => token.resourceServer?.accessTokenTTL ?? DEFAULT_TTL_SECONDS,
    },
    formats: {
      customizers: {
        // Auth0's M2M access-token claims; oidc-provider already sets iss, aud, iat, exp, scope, jti.
        jwt: (_ctx: unknown, token: ProviderToken, jwt: ProviderJwt) => {
          jwt.header = { typ: 'JWT' };
          jwt.payload.sub = `${token.clientId}@clients`;
          jwt.payload.azp = token.clientId;
          jwt.payload.gty = 'client-credentials';
          delete jwt.payload.client_id;
        },
      },
    },
  });
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.client) ctx.set(ISSUED_TO_HEADER, ctx.oidc.client.clientId);
  });
  provider.on('server_error', (_ctx, err) => {
    console.error(`local Auth0 tenant: oidc-provider server_error: ${err.message}`);
  });
  return provider;
}

function validateGrants(
  grants: TenantOptions['clientGrants'],
  clients: ReadonlyMap<string, unknown>,
  apis: ReadonlyMap<string, TenantApi>,
): void {
  for (const [clientId, byAudience] of Object.entries(grants)) {
    if (!clients.has(clientId)) throw new Error(`client grant for unknown client ${clientId}`);
    for (const [audience, scopes] of Object.entries(byAudience)) {
      const api = apis.get(audience);
      if (!api) throw new Error(`client grant of ${clientId} for unknown API ${audience}`);
      const undefinedScopes = scopes.filter((scope) => !api.scopes.includes(scope));
      if (undefinedScopes.length > 0) {
        throw new Error(`client grant of ${clientId} for ${audience} has scopes the API does not define: ${undefinedScopes.join(' ')}`);
      }
    }
  }
}

function knownClient(clients: ReadonlyMap<string, ClientState>, clientId: string): ClientState {
  const client = clients.get(clientId);
  if (!client) throw new Error(`unknown client ${clientId}`);
  return client;
}

/**
 * Auth0's token request (JSON or form, `audience`) as the form oidc-provider takes (`resource`).
 * `resource` is not an Auth0 parameter, so a client-sent one is dropped: only `audience` selects
 * the API. Returns undefined for other content types.
 */
function toAuth0Form(contentType: string | undefined, raw: Buffer): URLSearchParams | undefined {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  let form: URLSearchParams;
  if (mediaType === 'application/x-www-form-urlencoded') {
    form = new URLSearchParams(raw.toString('utf8'));
  } else if (mediaType === 'application/json') {
    form = jsonToForm(raw);
  } else {
    return undefined;
  }
  const audiences = form.getAll('audience');
  form.delete('audience');
  form.delete('resource');
  for (const audience of audiences) form.append('resource', audience);
  return form;
}

function jsonToForm(raw: Buffer): URLSearchParams {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new FrontError(400, 'invalid_request', 'failed to parse the request body');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new FrontError(400, 'invalid_request', 'the request body must be a JSON object');
  }
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(parsed)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === null || item === undefined) continue;
      form.append(name, typeof item === 'object' ? JSON.stringify(item) : String(item));
    }
  }
  return form;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new FrontError(413, 'invalid_request', 'request entity too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function endToEndHeaders(headers: IncomingHttpHeaders | OutgoingHttpHeaders): OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)));
}

function send(res: ServerResponse, status: number, headers: IncomingHttpHeaders | OutgoingHttpHeaders, body: Buffer): void {
  res.writeHead(status, { ...endToEndHeaders(headers), 'content-length': body.length });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, { 'content-type': 'application/json; charset=utf-8' }, Buffer.from(JSON.stringify(body)));
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops listening and destroys every connection, including requests left hanging on purpose. */
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });
}
