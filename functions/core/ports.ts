/**
 * The core's view of the outside world: one small interface per outside system, each with one
 * adapter in `functions/adapters/` (as Powertools Parameters' `BaseProvider` has one thin
 * `SecretsProvider`). The core is tested against these interfaces and the adapters against the
 * real local services. ARCHITECTURE.md draws the layers.
 */
import type { ClientConfig } from './grants.js';
import type { LeaseStore } from './lease.js';
import type { IamCaller } from './principal.js';

/**
 * An Auth0 client's credentials, as stored in Secrets Manager: a client secret
 * (`client_secret_post` / `client_secret_basic`) or a private key (`private_key_jwt`). Never
 * logged, never returned, never put in a cache key, never written anywhere but Secrets Manager.
 */
export type ClientCredentials =
  | { readonly kind: 'secret'; readonly clientId: string; readonly clientSecret: string }
  | {
      readonly kind: 'private_key';
      readonly clientId: string;
      /** PKCS#8 PEM */
      readonly privateKeyPem: string;
      /** the `kid` to put in client assertions, if the credential has one */
      readonly keyId?: string | undefined;
    };

/** Reads client credentials (Secrets Manager, through Powertools Parameters). */
export interface CredentialSource {
  get(secretId: string): Promise<ClientCredentials>;
  /**
   * After the IdP refused `rejected` (invalid_client — typically a rotation in progress):
   * credentials worth one more try, in order — AWSCURRENT read again, then AWSPENDING — without
   * any that equal `rejected`. Empty when there is nothing else to try.
   */
  alternatives(secretId: string, rejected: ClientCredentials): Promise<ClientCredentials[]>;
  /** Keep using `credentials` for `secretId` (they were just accepted) until the cache would expire anyway. */
  prefer(secretId: string, credentials: ClientCredentials): void;
  /** The client_id this instance last read for `secretId`, if any: no I/O, never throws. */
  knownClientId(secretId: string): string | undefined;
}

export interface TokenFetchRequest {
  readonly client: ClientConfig;
  readonly credentials: ClientCredentials;
  readonly audience: string;
  /** exactly the scopes to ask for: sorted, non-empty */
  readonly scopes: readonly string[];
  /**
   * The Auth0 organization to ask for (`org_…` id or name), sent as `organization`; the token's
   * `org_id` / `org_name` must say the same, and a request without one must get a token without
   * `org_id` (docs/auth0-wire-behaviour.md §14).
   */
  readonly organization?: string | undefined;
  /** why the IdP is called (metrics); absent for calls outside the cache, such as a rotation's test */
  readonly cause?: FetchCause | undefined;
  /** who caused it (a caller's miss): the principal's key, for the caller's own quota budget */
  readonly caller?: string | undefined;
}

/** A token as the IdP issued it, already validated (and, for JWTs, verified). */
export interface IssuedToken {
  readonly accessToken: string;
  /** the scopes the IdP says it granted, space-separated */
  readonly scope: string;
  /** epoch seconds: the moment the response arrived plus `expires_in`, capped by the JWT's `exp` */
  readonly expiresAt: number;
  /** epoch milliseconds at which the response arrived */
  readonly fetchedAt: number;
  /**
   * The Auth0 client_id the token was issued to (public, not a secret). The cache key is derived
   * from what the deployment declares, not from the secret, so this is what tells a token of the
   * client the secret held before from one of the client it holds now.
   */
  readonly clientId?: string | undefined;
  /**
   * What Auth0 said of the client's M2M token quota on this response (`Auth0-Client-Quota-Limit`,
   * sent on successes too when a quota is configured): the tightest bucket, if any.
   */
  readonly quota?: QuotaReading | undefined;
  /**
   * For a request naming an organization: what Auth0 said of that organization's quota
   * (`Auth0-Organization-Quota-Limit`), the tightest bucket; `quota` is then the client's alone.
   */
  readonly organizationQuota?: QuotaReading | undefined;
  /** The token's `org_id` claim, checked against the request (issue 12); none for a token without organization. */
  readonly organizationId?: string | undefined;
}

/** One reading of an Auth0 quota bucket (`b=per_hour;q=…;r=…;t=…`). */
export interface QuotaReading {
  /** the bucket: `per_hour`, `per_day` */
  readonly bucket: string;
  /** the bucket's size (`q`) */
  readonly limit: number;
  /** what is left in it (`r`) */
  readonly remaining: number;
  /** seconds until it resets (`t`) */
  readonly resetsInSeconds: number;
}

/** The IdP's token endpoint (Auth0 `POST /oauth/token`). */
export interface TokenEndpoint {
  fetchToken(request: TokenFetchRequest): Promise<IssuedToken>;
}

/** A token as the cache tiers hold it. */
export interface CachedToken extends IssuedToken {
  /** hash of (issuer, secret id, audience, sorted scopes[, organization]), what the deployment declares: never the secret */
  readonly key: string;
  /** short, non-reversible: what logs and ops tools show instead of the token */
  readonly fingerprint: string;
  /** what was asked for, so the scheduled refresher can ask again: the grants' client name ... */
  readonly client: string;
  readonly audience: string;
  /** ... and the requested scope set, sorted ... */
  readonly scopes: readonly string[];
  /** ... and the Auth0 organization, exactly as requested (an id or a name), if any */
  readonly organization?: string | undefined;
  /** epoch ms of the last recorded use (written at most once a minute per instance) */
  readonly lastUsedAt?: number | undefined;
  /**
   * The caller whose miss first fetched this token (its principal ARN), if a caller did: every
   * refresh of the token is charged to that caller's budget, so a caller that makes many tokens
   * pays for keeping them fresh, not the refresher or other callers.
   */
  readonly origin?: string | undefined;
}

/** What is known of a cached token without opening it. */
export type TokenRecord = Omit<CachedToken, 'accessToken'>;

/** A fleet-wide pause on IdP calls for one client (or one organization of a client). */
export interface Backoff {
  /** epoch ms */
  readonly until: number;
  /** why: `rate_limited`, `unavailable` */
  readonly reason: string;
}

/**
 * The fleet-wide tier (DynamoDB). Reads are strongly consistent, writes are conditional: a
 * write never replaces a token fetched later, and a lease is taken only when free or expired.
 */
export interface TokenStore extends LeaseStore {
  get(key: string): Promise<CachedToken | undefined>;
  /** store `token` unless one fetched later (for the same client_id) is already there: the newest fetch wins */
  put(token: CachedToken): Promise<void>;
  /** record that `key` was served at `atMs` (for the scheduled refresher's "used recently") */
  touch(key: string, atMs: number): Promise<void>;
  /** the client's back-off, if one is recorded (possibly already lapsed) */
  getBackoff(clientKey: string): Promise<Backoff | undefined>;
  /** record a back-off; never shortens one already recorded */
  putBackoff(clientKey: string, backoff: Backoff): Promise<void>;
  /** count one IdP fetch for the client in the hour starting at `hourStartMs`; false once `cap` is reached */
  countFetch(clientKey: string, hourStartMs: number, cap: number): Promise<boolean>;
  /** every cached token's record, without the token itself (never decrypted): the refresher's and ops' view */
  listTokens(): Promise<TokenRecord[]>;
  /** delete a cached token (ops: flush) */
  remove(key: string): Promise<void>;
}

export type CacheTier = 'memory' | 'dynamodb';

/** Which budget of the quota guard refused a fetch. */
export type QuotaBudget = 'caller' | 'miss' | 'client' | 'auth0';

/** Why the IdP was called: a caller's miss, refresh-ahead on a caller's read, or the schedule. */
export type FetchCause = 'miss' | 'refresh-ahead' | 'scheduled';

/** What the core reports; the adapter turns it into Powertools metrics. */
export interface Observer {
  cacheHit(tier: CacheTier): void;
  cacheMiss(): void;
  idpFetch(cause: FetchCause): void;
  /**
   * an IdP call failed: `code` is the vendor's internal error code (`ERR_IDP_RATE_LIMITED`, ...);
   * `idpError` the IdP's own OAuth `error` when it answered with a refusal (`invalid_client`, ...)
   */
  idpError(code: string, idpError?: string): void;
  leaseWait(): void;
  leaseTimeout(): void;
  /** a fleet-wide back-off was recorded */
  backoffRecorded(reason: string): void;
  /** a fetch was not attempted because of a back-off */
  backoffActive(): void;
  /**
   * the quota guard refused a fetch: `caller` (that caller's own budget), `miss` (new tokens may
   * not spend the reserve), `client` (the client's whole cap), `auth0` (Auth0's own count)
   */
  quotaGuardTripped(budget: QuotaBudget): void;
  /** Auth0 said what is left of a client's quota (`client`: the grants' client name) */
  idpQuota(client: string, reading: QuotaReading): void;
  /** DynamoDB failed and the instance carried on without it */
  storeDegraded(operation: string): void;
  /**
   * a token item was not used because it is not what the vendor wrote (its seal does not open,
   * or an attribute disagrees with it) or a flush removed it: `defect` says which
   * (adapters/dynamoTokenStore.ts `RecordDefect`).
   */
  sealedRecordRejected(defect: string): void;
  /** a refresh-ahead or scheduled refresh failed (the old token, still valid, keeps being served) */
  refreshFailed(cause: FetchCause): void;
}

/** Structured fields of a log line. */
export type LogFields = { [key: string]: unknown };

/** The subset of Powertools Logger the core uses. */
export interface Log {
  debug(message: string, ...fields: LogFields[]): void;
  info(message: string, ...fields: LogFields[]): void;
  warn(message: string, ...fields: LogFields[]): void;
  error(message: string, ...fields: LogFields[]): void;
}

/**
 * Proves who is asking (docs/identity-proof.md): checks the caller's presigned
 * `sts:GetCallerIdentity` proof for exactly this request and asks STS whose it is.
 */
export interface IdentityVerifier {
  /**
   * @throws IdentityProofError (403) for a proof refused before or by STS; StsUnavailableError
   *   (503) when STS cannot answer
   */
  verify(proof: unknown, request: { readonly audience: string; readonly scope: string | undefined; readonly organization?: string | undefined }): Promise<IamCaller>;
}
