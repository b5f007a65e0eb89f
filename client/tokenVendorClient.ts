/**
 * The client internal services use to get Auth0 access tokens from the token vendor. It signs
 * `POST {endpoint}/token` with the caller's AWS credentials (the API uses `AWS_IAM`
 * authorization), and keeps each token in memory until shortly before it expires, so a service
 * asks the vendor about once per token lifetime, however often it calls `getToken`.
 *
 * Cache semantics follow golang.org/x/oauth2's ReuseTokenSource and jose's remote JWKS:
 * expiry is counted from when the answer arrived, minus a margin; one request in flight per key;
 * failures are never cached.
 */
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4, type SignatureV4Init } from '@smithy/signature-v4';
import { ClientErrorCode, TokenVendorError } from './errors.js';

/** Static AWS credentials, or a provider of them (what `@aws-sdk/credential-providers` returns). */
export type TokenVendorCredentials = SignatureV4Init['credentials'];

export interface TokenVendorClientOptions {
  /**
   * Base URL including the stage, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com/prod`;
   * the client POSTs to `${endpoint}/token`.
   */
  endpoint: string;
  /** the API's region: part of the SigV4 credential scope */
  region: string;
  /** default: `defaultProvider()` from `@aws-sdk/credential-provider-node`, the default AWS chain */
  credentials?: TokenVendorCredentials;
  /** a cached token is used until `expiresAt - refreshMarginSeconds`; default 60 */
  refreshMarginSeconds?: number;
  /** per call, covering the response body too; default 10 000 */
  timeoutMs?: number;
  /** injectable for tests */
  fetch?: typeof fetch;
  /** ms clock used for token expiry, injectable for tests */
  now?: () => number;
}

/** An access token as the vendor issued it, with its expiry on this machine's clock. */
export interface VendedToken {
  accessToken: string;
  tokenType: 'Bearer';
  /** the granted scopes, space-separated */
  scope: string;
  /** epoch ms computed at receipt: now + expires_in * 1000 */
  expiresAt: number;
}

/** What to ask for: the API (Auth0 audience) and, optionally, space-separated scopes. */
export interface TokenRequest {
  audience: string;
  scope?: string;
}

const DEFAULT_REFRESH_MARGIN_SECONDS = 60;
const DEFAULT_TIMEOUT_MS = 10_000;
/** Enough of an error description to diagnose, not enough to carry a stray payload into logs. */
const MAX_DESCRIPTION_CHARS = 300;

/**
 * Gets and caches vendor tokens. Build one per process and share it: the cache and the in-flight
 * requests live in the instance.
 */
export class TokenVendorClient {
  readonly #tokenUrl: URL;
  readonly #signer: SignatureV4;
  readonly #marginMs: number;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #cache = new Map<string, VendedToken>();
  readonly #pending = new Map<string, Promise<VendedToken>>();
  /** bumped by clear(): an answer to a request sent before the clear is returned but not cached */
  #generation = 0;

  /** @throws TypeError for an endpoint that is not an http(s) URL, or nonsensical numbers */
  constructor(opts: TokenVendorClientOptions) {
    const base = new URL(opts.endpoint);
    if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new TypeError('endpoint must be an http(s) URL');
    if (base.search !== '' || base.hash !== '') throw new TypeError('endpoint must not have a query or fragment');
    this.#tokenUrl = new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}/token`);

    const margin = opts.refreshMarginSeconds ?? DEFAULT_REFRESH_MARGIN_SECONDS;
    if (!Number.isFinite(margin) || margin < 0) throw new TypeError('refreshMarginSeconds must be a non-negative number');
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError('timeoutMs must be a positive number');
    this.#marginMs = margin * 1000;
    this.#timeoutMs = timeoutMs;
    this.#fetch = opts.fetch ?? globalThis.fetch;
    this.#now = opts.now ?? Date.now;

    this.#signer = new SignatureV4({
      service: 'execute-api',
      region: opts.region,
      // Built once: defaultProvider() memoizes the chain's credentials and refreshes them before
      // they expire, which a provider built per call would not.
      credentials: opts.credentials ?? defaultProvider(),
      sha256: Hash.bind(null, 'sha256'),
      // x-amz-content-sha256 is an S3 convention; API Gateway hashes the body it receives.
      applyChecksum: false,
    });
  }

  /**
   * A token for `audience` with `scope`: from memory while it has more than the refresh margin
   * left, else from the vendor. Concurrent calls for the same audience and scope (in any order
   * or spacing) share one request.
   *
   * @throws TokenVendorError when the vendor refuses, fails or cannot be reached; nothing is
   *   cached, so the next call asks again.
   * @throws TypeError for an empty audience
   */
  getToken(req: TokenRequest): Promise<VendedToken> {
    if (typeof req.audience !== 'string' || req.audience.trim() === '') {
      return Promise.reject(new TypeError('audience must be a non-empty string'));
    }
    const scope = normalizeScope(req.scope);
    const key = JSON.stringify([req.audience, scope]);

    // Expiry is checked on every read: a token past its margin is never handed out from memory.
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      if (this.#now() < cached.expiresAt - this.#marginMs) return Promise.resolve(cached);
      this.#cache.delete(key);
    }

    const inFlight = this.#pending.get(key);
    if (inFlight !== undefined) return inFlight;

    const generation = this.#generation;
    const request = this.#fetchToken(req.audience, scope).then((token) => {
      if (generation === this.#generation) this.#cache.set(key, token);
      return token;
    });
    this.#pending.set(key, request);
    // Success or failure, the request stops being shared once it settles, so a failure is never
    // cached: the next call asks again (jose's pendingFetch, middy's evict-on-error). Both
    // branches are handled, so this side chain never reports an unhandled rejection; the
    // caller gets `request` itself and its rejection.
    const forget = (): void => {
      if (this.#pending.get(key) === request) this.#pending.delete(key);
    };
    request.then(forget, forget);
    return request;
  }

  /**
   * Forget every cached token, e.g. after a downstream API rejected one. Requests already in
   * flight still answer their callers, but what they bring back is not cached.
   */
  clear(): void {
    this.#cache.clear();
    this.#pending.clear();
    this.#generation++;
  }

  async #fetchToken(audience: string, scope: string): Promise<VendedToken> {
    const url = this.#tokenUrl;
    const body = JSON.stringify(scope === '' ? { audience } : { audience, scope });
    const unsigned = new HttpRequest({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      // Already percent-encoded, exactly as fetch will send it; the signer encodes it once more,
      // which is the double encoding API Gateway checks.
      path: url.pathname,
      headers: { host: url.host, 'content-type': 'application/json' },
      body,
    });

    let signed: HttpRequest;
    try {
      // Signed on the real clock, not the injected one: the server judges X-Amz-Date by its own.
      signed = (await this.#signer.sign(unsigned)) as HttpRequest;
    } catch (error) {
      throw new TokenVendorError('Could not sign the token request: no usable AWS credentials.', {
        status: 0,
        code: ClientErrorCode.credentialsUnavailable,
        cause: error,
      });
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(signed.headers)) {
      // fetch derives Host from the URL (the same value we signed) and refuses to be told it.
      if (name.toLowerCase() !== 'host') headers[name] = value;
    }

    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(url, {
        method: 'POST',
        headers,
        body,
        // A redirect would resend the signed request somewhere else; API Gateway never sends one.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
      throw new TokenVendorError(
        timedOut ? `The token vendor did not answer within ${this.#timeoutMs} ms.` : 'Could not reach the token vendor.',
        { status: 0, code: timedOut ? ClientErrorCode.timeout : ClientErrorCode.networkError, cause: error },
      );
    }
    const receivedAt = this.#now();

    if (response.status < 200 || response.status > 299) throw this.#errorFrom(response, text, receivedAt);
    return parseTokenResponse(response.status, text, scope, receivedAt);
  }

  #errorFrom(response: Response, text: string, receivedAt: number): TokenVendorError {
    const retryAfterSeconds = parseRetryAfter(response.headers.get('retry-after'), receivedAt);
    const body = parseJson(text);
    const error = isRecord(body) && typeof body.error === 'string' && /^[\x20-\x7e]{1,64}$/.test(body.error) ? body.error : undefined;
    const description = isRecord(body) && typeof body.error_description === 'string' ? printable(body.error_description) : undefined;
    const code = error ?? ClientErrorCode.httpError;
    const message = `The token vendor answered ${response.status} ${code}${description === undefined ? '' : `: ${description}`}`;
    return new TokenVendorError(message, {
      status: response.status,
      code,
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
    });
  }
}

/** Split on spaces, drop duplicates, sort: `b a a` and ` a b` are the same cache key and request. */
export function normalizeScope(scope: string | undefined): string {
  if (scope === undefined) return '';
  return [...new Set(scope.split(' ').filter((s) => s !== ''))].sort().join(' ');
}

/** Validate a 2xx body; the message never quotes the body, which may hold a token. */
function parseTokenResponse(status: number, text: string, requestedScope: string, receivedAt: number): VendedToken {
  const invalid = (why: string): TokenVendorError =>
    new TokenVendorError(`The token vendor answered ${status} with an invalid token response: ${why}.`, {
      status,
      code: ClientErrorCode.invalidResponse,
    });
  const body = parseJson(text);
  if (!isRecord(body)) throw invalid('not a JSON object');
  if (typeof body.access_token !== 'string' || body.access_token === '') throw invalid('access_token is missing');
  // RFC 6749 §5.1: token_type is case-insensitive.
  if (typeof body.token_type !== 'string' || body.token_type.toLowerCase() !== 'bearer') throw invalid('token_type is not Bearer');
  const expiresIn = body.expires_in;
  if (typeof expiresIn !== 'number' || !Number.isSafeInteger(expiresIn) || expiresIn <= 0) {
    throw invalid('expires_in is not a positive integer');
  }
  if (body.scope !== undefined && typeof body.scope !== 'string') throw invalid('scope is not a string');
  return Object.freeze({
    accessToken: body.access_token,
    tokenType: 'Bearer',
    // RFC 6749 §5.1: an absent scope means the one requested.
    scope: typeof body.scope === 'string' ? body.scope : requestedScope,
    // expires_in is "seconds left now" at the vendor: count it from when the answer arrived.
    expiresAt: receivedAt + expiresIn * 1000,
  });
}

/** RFC 9110 §10.2.3: delay-seconds or an HTTP-date; `undefined` when absent or unreadable. */
function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  const clean = text.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return clean.length > MAX_DESCRIPTION_CHARS ? `${clean.slice(0, MAX_DESCRIPTION_CHARS)}…` : clean;
}
