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
 */
import { appendFileSync } from 'node:fs';
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import type { JWK } from 'jose';

export type ClientAuthMethod = 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';

export interface TenantClient {
  clientId: string;
  /** for client_secret_* methods */
  clientSecret?: string;
  authMethod: ClientAuthMethod;
  /** public keys, for private_key_jwt (two at once allow an overlapping rotation) */
  jwks?: { keys: JWK[] };
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
  /** number of POST /oauth/token requests received (every outcome, including failures) since start or last reset */
  tokenRequests(): number;
  /** successful issuances */
  issued(): ReadonlyArray<IssuedToken>;
  resetCounters(): void;
  /** change a client's secret at once (Auth0's rotate-secret has no overlap) */
  setClientSecret(clientId: string, secret: string): void;
  /** replace a client's registered public keys (private_key_jwt) */
  setClientJwks(clientId: string, jwks: { keys: JWK[] }): void;
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

const TOKEN_PATH = '/oauth/token';
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

interface Upstream {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export async function startLocalAuth0Tenant(opts: TenantOptions): Promise<LocalAuth0Tenant> {
  const apis = new Map(opts.apis.map((api) => [api.audience, api]));
  const clients = new Map(opts.clients.map((client) => [client.clientId, { ...client }]));
  validateGrants(opts.clientGrants, clients, apis);

  const record = (kind: 'access_token' | 'client_secret', value: string): void => {
    if (opts.recordFile) appendFileSync(opts.recordFile, `${JSON.stringify({ kind, value })}\n`);
  };
  for (const client of clients.values()) {
    if (client.clientSecret !== undefined) record('client_secret', client.clientSecret);
  }

  const [oidcProvider, signingKeys, foreignKeys] = await Promise.all([
    loadOidcProvider(),
    generateKeyPair('RS256', { extractable: true }),
    generateKeyPair('RS256'),
  ]);
  const kid = randomUUID();
  const signingJwk = { ...(await exportJWK(signingKeys.privateKey)), kid, alg: 'RS256', use: 'sig' };

  let requestCount = 0;
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

  let inner: Server;
  let innerPort: number;
  try {
    const provider = createProvider(oidcProvider, issuer, signingJwk, { apis, clients, clientGrants: opts.clientGrants });
    inner = createServer(provider.callback());
    innerPort = await listen(inner, 0);
  } catch (err) {
    await closeServer(front);
    throw err;
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
    const isTokenRequest = req.method === 'POST' && new URL(req.url ?? '/', origin).pathname === TOKEN_PATH;
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

  let closing: Promise<void> | undefined;
  return {
    origin,
    issuer,
    port,
    tokenRequests: () => requestCount,
    issued: () => [...issuedTokens],
    resetCounters: () => {
      requestCount = 0;
      issuedTokens = [];
    },
    setClientSecret: (clientId, secret) => {
      knownClient(clients, clientId).clientSecret = secret;
      record('client_secret', secret);
    },
    setClientJwks: (clientId, jwks) => {
      knownClient(clients, clientId).jwks = jwks;
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

interface TenantTables {
  apis: ReadonlyMap<string, TenantApi>;
  clients: ReadonlyMap<string, TenantClient>;
  clientGrants: TenantOptions['clientGrants'];
}

/** oidc-provider configured as an Auth0 tenant's client_credentials endpoint. */
function createProvider(
  { Provider, errors }: OidcProviderModule,
  issuer: string,
  signingJwk: JWK,
  { apis, clients, clientGrants }: TenantTables,
): OidcProvider {
  // oidc-provider answers access_denied with 400; Auth0 answers 403.
  const accessDenied = (description: string): Error =>
    Object.assign(new errors.AccessDenied(description), { status: 403, statusCode: 403 });

  const provider = new Provider(issuer, {
    adapter: createAdapterClass((clientId) => {
      const client = clients.get(clientId);
      return client && {
        client_id: client.clientId,
        client_secret: client.clientSecret,
        token_endpoint_auth_method: client.authMethod,
        jwks: client.jwks,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      };
    }),
    jwks: { keys: [signingJwk] },
    routes: { token: TOKEN_PATH, jwks: '/.well-known/jwks.json' },
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
  clients: ReadonlyMap<string, TenantClient>,
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

function knownClient(clients: Map<string, TenantClient>, clientId: string): TenantClient {
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
