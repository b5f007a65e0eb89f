/**
 * The IdP as a good citizen: a {@link TokenEndpoint} that wraps a TokenEndpoint, as
 * golang.org/x/oauth2 wraps the `clientcredentials` fetcher in `ReuseTokenSource`. Every fetch
 * the vendor makes goes through it:
 * - not while the fleet is backing off from this Auth0 client (a back-off recorded in the table);
 * - not past the quota guard's hourly cap for the client;
 * - transient failures retried with full jitter inside a deadline (AWS Architecture Blog,
 *   "Exponential Backoff And Jitter");
 * - a 429, or retries run out, recorded as a back-off for every instance;
 * - a refused credential (invalid_client, typically a rotation in progress) tried again with the
 *   secret as it is now: AWSCURRENT re-read, then AWSPENDING, once each.
 */
import {
  IdpBackoffError,
  IdpRateLimitedError,
  IdpRejectedError,
  IdpUnavailableError,
  QuotaGuardError,
  describe,
} from './errors.js';
import type { Backoff, ClientCredentials, CredentialSource, IssuedToken, Log, Observer, TokenEndpoint, TokenFetchRequest, TokenStore } from './ports.js';
import { clientKey } from './tokenIdentity.js';

export interface GoodCitizenOptions {
  /** Total time one fetch may take, retries of transient failures included. */
  readonly idpDeadlineMs: number;
  /** The longest one attempt can take: a retry starts only if it can finish inside the deadline. */
  readonly idpAttemptMs: number;
  /** Full-jitter back-off between retries: base and cap, ms. */
  readonly retryBaseMs: number;
  readonly retryCapMs: number;
  /** Fleet-wide pause after a fetch failed transiently even with retries, seconds. */
  readonly failureBackoffSeconds: number;
  /** Quota guard: most IdP fetches per client per hour across the fleet; 0 = no cap. */
  readonly quotaPerClientPerHour: number;
}

export interface GoodCitizenDeps {
  readonly idp: TokenEndpoint;
  /** where back-offs and fetch counts are shared by the fleet (a degraded store falls back to the instance's own) */
  readonly limits: Pick<TokenStore, 'getBackoff' | 'putBackoff' | 'countFetch'>;
  readonly credentials: Pick<CredentialSource, 'alternatives' | 'prefer'>;
  readonly observer: Pick<Observer, 'idpFetch' | 'idpError' | 'backoffRecorded' | 'backoffActive' | 'quotaGuardTripped'>;
  readonly log: Log;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly random: () => number;
}

/**
 * Retries per fetch, whatever the deadline says: with full jitter a pause can be near zero, and
 * a deadline alone would let a fast-failing IdP be hit many times in a row.
 */
const MAX_ATTEMPTS = 5;
const HOUR_MS = 3_600_000;

export class GoodCitizenEndpoint implements TokenEndpoint {
  /** back-offs this instance knows of, so a paused client costs no read per request */
  private readonly backoffs = new Map<string, Backoff>();

  constructor(
    private readonly deps: GoodCitizenDeps,
    private readonly options: GoodCitizenOptions,
  ) {}

  async fetchToken(request: TokenFetchRequest): Promise<IssuedToken> {
    const client = clientKey(request.client.issuer, request.credentials.clientId);
    await this.checkBackoff(client);
    await this.checkQuota(client);
    const started = this.deps.now();
    let paused = 0;
    let credentials = request.credentials;
    let alternatives: ClientCredentials[] | undefined;
    for (let attempt = 0; ; attempt += 1) {
      this.deps.observer.idpFetch(request.cause ?? 'miss');
      try {
        const issued = await this.deps.idp.fetchToken({ ...request, credentials });
        if (credentials !== request.credentials) this.deps.credentials.prefer(request.client.secretId, credentials);
        return issued;
      } catch (error) {
        this.deps.observer.idpError(codeOf(error), error instanceof IdpRejectedError ? error.idpError : undefined);
        if (error instanceof IdpRejectedError && error.idpError === 'invalid_client') {
          // Auth0's rotate-secret kills the old secret at once: the new one may already be
          // AWSCURRENT (a finished rotation) or still AWSPENDING (one in progress). Try each
          // once; nothing learnt from the failure is cached.
          alternatives ??= await this.deps.credentials.alternatives(request.client.secretId, credentials);
          const next = alternatives.shift();
          if (next === undefined) throw error;
          this.deps.log.warn('the IdP refused the client credentials; trying the secret as it is now (rotation?)', { client: request.client.name });
          credentials = next;
          continue;
        }
        if (error instanceof IdpRateLimitedError) {
          await this.recordBackoff(client, { until: this.deps.now() + error.retryAfterSeconds * 1000, reason: 'rate_limited' });
          throw error;
        }
        if (!(error instanceof IdpUnavailableError)) throw error;
        const pause = this.deps.random() * Math.min(this.options.retryCapMs, this.options.retryBaseMs * 2 ** attempt);
        const spent = Math.max(this.deps.now() - started, paused);
        if (attempt + 1 >= MAX_ATTEMPTS || spent + pause + this.options.idpAttemptMs > this.options.idpDeadlineMs) {
          await this.recordBackoff(client, { until: this.deps.now() + this.options.failureBackoffSeconds * 1000, reason: 'unavailable' });
          throw new IdpUnavailableError(`${error.message} (after ${attempt + 1} attempts)`, Math.max(error.retryAfterSeconds, this.options.failureBackoffSeconds), { cause: error });
        }
        this.deps.log.debug('retrying the IdP', { attempt: attempt + 1, pauseMs: Math.round(pause), error: describe(error) });
        await this.deps.sleep(pause);
        paused += pause;
      }
    }
  }

  private async checkBackoff(client: string): Promise<void> {
    const now = this.deps.now();
    let backoff = this.backoffs.get(client);
    if (backoff === undefined || backoff.until <= now) {
      backoff = await this.deps.limits.getBackoff(client);
      if (backoff !== undefined) this.backoffs.set(client, backoff);
    }
    if (backoff !== undefined && backoff.until > now) {
      this.deps.observer.backoffActive();
      throw new IdpBackoffError(`backing off from the IdP (${backoff.reason}) until ${new Date(backoff.until).toISOString()}`, Math.ceil((backoff.until - now) / 1000));
    }
  }

  private async recordBackoff(client: string, backoff: Backoff): Promise<void> {
    const known = this.backoffs.get(client);
    if (known === undefined || known.until < backoff.until) this.backoffs.set(client, backoff);
    this.deps.observer.backoffRecorded(backoff.reason);
    this.deps.log.warn('backing off from the IdP', { clientKey: client, reason: backoff.reason, until: new Date(backoff.until).toISOString() });
    await this.deps.limits.putBackoff(client, backoff);
  }

  /** The quota guard: a fleet-wide count per client per clock hour. */
  private async checkQuota(client: string): Promise<void> {
    const cap = this.options.quotaPerClientPerHour;
    if (cap <= 0) return;
    const hourStart = Math.floor(this.deps.now() / HOUR_MS) * HOUR_MS;
    if (await this.deps.limits.countFetch(client, hourStart, cap)) return;
    this.deps.observer.quotaGuardTripped();
    this.deps.log.error('quota guard: hourly cap on IdP fetches reached', { clientKey: client, cap });
    throw new QuotaGuardError(`quota guard: ${cap} fetches this hour for client ${client}`, Math.max(1, Math.ceil((hourStart + HOUR_MS - this.deps.now()) / 1000)));
  }
}

/** The internal code of a failure, for the IdpError metric: the vendor's own, or the type of anything else. */
function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'unknown';
}
