/**
 * The client internal services and scheduled jobs use to get Auth0 access tokens from the token
 * vendor. Every request carries a fresh identity proof (docs/identity-proof.md) made with the
 * caller's AWS credentials and bound to its audience, scope and organization (when one is named),
 * and reaches the vendor one of two ways:
 * - `endpoint`: `POST {endpoint}/token` on the REST API, SigV4-signed for `AWS_IAM`;
 * - `functionName`: Lambda `Invoke` on the vend function (scheduled jobs, no API in the way).
 * Either way each token is kept in memory until shortly before it expires, so a caller asks the
 * vendor about once per token lifetime, however often it calls `getToken`.
 *
 * Cache semantics follow golang.org/x/oauth2's ReuseTokenSource and jose's remote JWKS:
 * expiry is counted from when the answer arrived, minus a margin; one request in flight per key;
 * failures are never cached. Both modes share them: a mode is only a {@link Transport}.
 */
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { apiGatewayTransport } from './apiGatewayTransport.js';
import { IdentityProver, checkRegion, normalizeScope } from './identityProof.js';
import { lambdaInvokeTransport } from './lambdaInvokeTransport.js';
import { organizationProblem } from './organization.js';
import { credentialsUnavailable } from './signedPost.js';
import type { Transport, TransportOptions } from './transport.js';
import type { TokenRequest, TokenVendorCredentials, VendedToken } from './types.js';

export { normalizeScope } from './identityProof.js';
export type { TokenRequest, TokenVendorCredentials, VendedToken } from './types.js';

/** What both modes take. */
export interface TokenVendorClientCommonOptions {
  /** the vendor's region: the SigV4 credential scope of every request and of the proof */
  region: string;
  /**
   * The deployment's proof server id, signed into every proof so that it is good for this
   * deployment only: PROOF_SERVER_ID, `token-vendor-<stage>-<region>` as deployed
   * (`token-vendor-prod-eu-west-1`); the local stack uses `token-vendor-local`.
   */
  serverId: string;
  /**
   * An http(s) origin the proof names instead of `https://sts.<region>.amazonaws.com`: only for
   * the local stack and tests (a loopback `http://127.0.0.1:PORT`), where the vendor is configured
   * with the same `STS_ENDPOINT`. The credential scope stays `region`.
   */
  stsEndpoint?: string;
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

/** Services: through the REST API. */
export interface TokenVendorApiOptions extends TokenVendorClientCommonOptions {
  /**
   * Base URL including the stage, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com/prod`;
   * the client POSTs to `${endpoint}/token`.
   */
  endpoint: string;
  functionName?: undefined;
  lambdaEndpoint?: undefined;
}

/** Scheduled jobs: Lambda `Invoke` on the vend function, with `lambda:InvokeFunction` on it. */
export interface TokenVendorDirectOptions extends TokenVendorClientCommonOptions {
  /** the vend function's name or ARN, e.g. `token-vendor-prod-vend` */
  functionName: string;
  /** an http(s) origin instead of `https://lambda.<region>.amazonaws.com`: the local Invoke stand-in */
  lambdaEndpoint?: string;
  endpoint?: undefined;
}

/** Exactly one of `endpoint` (the REST API) and `functionName` (direct invocation). */
export type TokenVendorClientOptions = TokenVendorApiOptions | TokenVendorDirectOptions;

const DEFAULT_REFRESH_MARGIN_SECONDS = 60;
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Gets and caches vendor tokens. Build one per process and share it: the cache and the in-flight
 * requests live in the instance.
 */
export class TokenVendorClient {
  readonly #transport: Transport;
  readonly #prover: IdentityProver;
  readonly #marginMs: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, VendedToken>();
  readonly #pending = new Map<string, Promise<VendedToken>>();
  /** bumped by clear(): an answer to a request sent before the clear is returned but not cached */
  #generation = 0;

  /**
   * @throws TypeError for both or neither of `endpoint` and `functionName`, an endpoint that is
   *   not an http(s) URL, a bad region, server id, function name or origin, or nonsensical numbers
   */
  constructor(opts: TokenVendorClientOptions) {
    const hasEndpoint = opts.endpoint !== undefined;
    const hasFunction = opts.functionName !== undefined;
    if (hasEndpoint === hasFunction) throw new TypeError('give exactly one of endpoint (the REST API) and functionName (direct invocation)');
    if (hasEndpoint && opts.lambdaEndpoint !== undefined) throw new TypeError('lambdaEndpoint applies only with functionName');
    checkRegion(opts.region);

    const margin = opts.refreshMarginSeconds ?? DEFAULT_REFRESH_MARGIN_SECONDS;
    if (!Number.isFinite(margin) || margin < 0) throw new TypeError('refreshMarginSeconds must be a non-negative number');
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError('timeoutMs must be a positive number');
    this.#marginMs = margin * 1000;
    this.#now = opts.now ?? Date.now;

    // Built once and shared by the proof and the request: defaultProvider() memoizes the chain's
    // credentials and refreshes them before they expire, which a provider built per call would not.
    const credentials = opts.credentials ?? defaultProvider();
    this.#prover = new IdentityProver({
      region: opts.region,
      serverId: opts.serverId,
      credentials,
      ...(opts.stsEndpoint === undefined ? {} : { stsEndpoint: opts.stsEndpoint }),
    });
    const transport: TransportOptions = { region: opts.region, credentials, fetch: opts.fetch ?? globalThis.fetch, timeoutMs, now: this.#now };
    this.#transport =
      opts.endpoint !== undefined
        ? apiGatewayTransport(opts.endpoint, transport)
        : lambdaInvokeTransport({
            ...transport,
            functionName: opts.functionName,
            ...(opts.lambdaEndpoint === undefined ? {} : { lambdaEndpoint: opts.lambdaEndpoint }),
          });
  }

  /**
   * A token for `audience` with `scope`, for `organization` when one is named: from memory while
   * it has more than the refresh margin left, else from the vendor. Concurrent calls for the same
   * audience, scope (in any order or spacing) and organization share one request; two
   * organizations, or an organization and none, never share a request or a cached token.
   *
   * @throws TokenVendorError when the vendor refuses, fails or cannot be reached; nothing is
   *   cached, so the next call asks again.
   * @throws TypeError for an empty audience, or an organization that is empty, longer than 100
   *   characters or holds a control character (rejected before any request)
   */
  getToken(req: TokenRequest): Promise<VendedToken> {
    if (typeof req.audience !== 'string' || req.audience.trim() === '') {
      return Promise.reject(new TypeError('audience must be a non-empty string'));
    }
    const { organization } = req;
    const problem = organization === undefined ? undefined : organizationProblem(organization);
    if (problem !== undefined) return Promise.reject(new TypeError(problem));
    const scope = normalizeScope(req.scope);
    // The organization is the key's third element only when named: JSON arrays of different
    // lengths never collide, so no organization is read as another or as none.
    const key = JSON.stringify(organization === undefined ? [req.audience, scope] : [req.audience, scope, organization]);

    // Expiry is checked on every read: a token past its margin is never handed out from memory.
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      if (this.#now() < cached.expiresAt - this.#marginMs) return Promise.resolve(cached);
      this.#cache.delete(key);
    }

    const inFlight = this.#pending.get(key);
    if (inFlight !== undefined) return inFlight;

    const generation = this.#generation;
    const request = this.#fetchToken(req.audience, scope, organization).then((token) => {
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

  /** One request to the vendor, with a proof made for it alone. */
  async #fetchToken(audience: string, scope: string, organization: string | undefined): Promise<VendedToken> {
    let proof: string;
    try {
      proof = await this.#prover.prove(audience, scope, organization);
    } catch (error) {
      throw credentialsUnavailable(error);
    }
    return this.#transport({ audience, scope, ...(organization === undefined ? {} : { organization }), proof });
  }
}
