/**
 * The IdP as a good citizen: a {@link TokenEndpoint} that wraps a TokenEndpoint, as
 * golang.org/x/oauth2 wraps the `clientcredentials` fetcher in `ReuseTokenSource`. Every fetch
 * the vendor makes goes through it:
 * - not while the fleet is backing off from this Auth0 client (a back-off recorded in the table);
 * - not past the quota guard, which protects Auth0 from the vendor without letting one caller
 *   starve another: a fleet-wide hourly cap per client, of which a reserve only refreshes of
 *   tokens in use may spend; a budget per caller for the new tokens its misses cause; Auth0's own
 *   count when it sends one (`Auth0-Client-Quota-Limit`: no new tokens once only the reserve is
 *   left); and a refusal (403: the grants and
 *   Auth0's client grant disagree) remembered briefly, so asking again costs nothing;
 * - transient failures retried with full jitter inside a deadline (AWS Architecture Blog,
 *   "Exponential Backoff And Jitter");
 * - per Auth0 organization (issue 12): a 429 that says only the organization's quota is used up
 *   (`Auth0-Organization-Quota-Limit`, docs/auth0-wire-behaviour.md §14.9) pauses that organization
 *   of the client, not the client, and Auth0's count of the organization's quota stops new tokens
 *   for that organization only;
 * - a 429, or retries run out, recorded as a back-off for every instance, but only on evidence
 *   about the IdP: two failed attempts at least, none of them stretched by the instance being
 *   frozen (Lambda freezes an instance between invocations; a timer that fires seconds late is
 *   the instance's own pause, not the IdP's);
 * - a refused credential (any 401, or invalid_client: typically a rotation in progress) tried
 *   again with the secret as it is now: AWSCURRENT re-read, then AWSPENDING, once each.
 */
import {
  CallerQuotaError,
  IdpBackoffError,
  IdpOrganizationQuotaError,
  IdpCredentialRefusedError,
  IdpGrantMismatchError,
  IdpOrganizationMismatchError,
  IdpRateLimitedError,
  IdpRejectedError,
  IdpUnavailableError,
  QuotaGuardError,
  describe,
} from './errors.js';
import type { Backoff, ClientCredentials, CredentialSource, IssuedToken, Log, Observer, QuotaReading, TokenEndpoint, TokenFetchRequest, TokenStore } from './ports.js';
import { clientKey, counterKey, organizationKey } from './tokenIdentity.js';

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
  /** The share of that cap (0..1) that only refreshes of tokens already in use may spend. */
  readonly quotaReserveRatio: number;
  /** Most fetches charged to one caller (its misses, and refreshes of the tokens they made) per client per hour across the fleet; 0 = no cap. */
  readonly quotaPerCallerPerHour: number;
  /** How long a refusal of the audience or scope (a grant mismatch) is remembered, ms. */
  readonly refusalMemoryMs: number;
}

export interface GoodCitizenDeps {
  readonly idp: TokenEndpoint;
  /** where back-offs and fetch counts are shared by the fleet (a degraded store falls back to the instance's own) */
  readonly limits: Pick<TokenStore, 'getBackoff' | 'putBackoff' | 'countFetch'>;
  readonly credentials: Pick<CredentialSource, 'alternatives' | 'prefer'>;
  readonly observer: Pick<Observer, 'idpFetch' | 'idpError' | 'backoffRecorded' | 'backoffActive' | 'quotaGuardTripped' | 'idpQuota'>;
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
/**
 * An attempt that took this much longer than it possibly can (its own timeouts) was stretched by
 * the instance being frozen, not by the IdP: its failure is no evidence about the IdP.
 */
const FREEZE_SLACK_MS = 2_000;
/** The longest Retry-After the quota guard answers, whatever a bucket's reset says. */
const MAX_QUOTA_RETRY_AFTER_SECONDS = 3_600;
/** Refusals remembered at most: a caller cycling through scope sets cannot grow the map past this. */
const MAX_REMEMBERED_REFUSALS = 1_000;

export class GoodCitizenEndpoint implements TokenEndpoint {
  /** back-offs this instance knows of, so a paused client costs no read per request */
  private readonly backoffs = new Map<string, Backoff>();
  /** Auth0's last word on each client's quota, and when it was heard (epoch ms) */
  private readonly readings = new Map<string, { readonly reading: QuotaReading; readonly at: number }>();
  /** grant mismatches, by client, audience and scopes, until when they are remembered (epoch ms) */
  private readonly refusals = new Map<string, { readonly error: RememberedRefusal; readonly until: number }>();

  constructor(
    private readonly deps: GoodCitizenDeps,
    private readonly options: GoodCitizenOptions,
  ) {}

  async fetchToken(request: TokenFetchRequest): Promise<IssuedToken> {
    const client = clientKey(request.client.issuer, request.credentials.clientId);
    const organization = request.organization === undefined ? undefined : organizationKey(client, request.organization);
    const refusalKey = JSON.stringify([client, request.audience, request.scopes, ...(request.organization === undefined ? [] : [request.organization])]);
    this.checkRemembered(refusalKey);
    await this.checkBackoff(client);
    if (organization !== undefined) await this.checkBackoff(organization);
    if (organization !== undefined) this.checkAuth0Count(organization, request.cause === 'refresh-ahead' || request.cause === 'scheduled');
    await this.checkQuota(client, request);
    const started = this.deps.now();
    let paused = 0;
    let failedOnEvidence = 0;
    let credentials = request.credentials;
    let alternatives: ClientCredentials[] | undefined;
    for (let attempt = 0; ; attempt += 1) {
      this.deps.observer.idpFetch(request.cause ?? 'miss');
      const attemptStarted = this.deps.now();
      try {
        const issued = await this.deps.idp.fetchToken({ ...request, credentials });
        if (credentials !== request.credentials) this.deps.credentials.prefer(request.client.secretId, credentials);
        if (issued.quota !== undefined) this.noteQuota(client, request.client.name, issued.quota);
        if (organization !== undefined && issued.organizationQuota !== undefined) this.noteQuota(organization, request.client.name, issued.organizationQuota, false);
        return issued;
      } catch (error) {
        this.deps.observer.idpError(codeOf(error), error instanceof IdpRejectedError ? error.idpError : undefined);
        if (error instanceof IdpGrantMismatchError) {
          this.remember(refusalKey, error);
          this.deps.log.error('the IdP refused an audience, scope or organization the grants allow: the grants file and the client grant disagree', {
            client: request.client.name,
            audience: request.audience,
            scopes: request.scopes,
            ...(request.organization === undefined ? {} : { organization: request.organization }),
            idpError: error.idpError,
          });
          throw error;
        }
        if (error instanceof IdpOrganizationMismatchError) {
          // Asking again would mint (and charge the quota for) another token nobody can use.
          this.remember(refusalKey, error);
          this.deps.log.error('the IdP issued a token for another organization than asked (a default organization, or a tenant ignoring the parameter?)', {
            client: request.client.name,
            audience: request.audience,
            ...(request.organization === undefined ? {} : { organization: request.organization }),
          });
          throw error;
        }
        if (error instanceof IdpCredentialRefusedError) {
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
        if (error instanceof IdpOrganizationQuotaError) {
          // The organization's own quota: its tokens pause, the client's other organizations and
          // its organization-less tokens go on. Without an organization in the request (the IdP
          // applied a default one, §14.5) only this request waits: never the whole client.
          if (organization !== undefined) await this.recordBackoff(organization, { until: this.deps.now() + error.retryAfterSeconds * 1000, reason: 'organization_quota' });
          else this.remember(refusalKey, error, error.retryAfterSeconds * 1000);
          throw error;
        }
        if (error instanceof IdpRateLimitedError) {
          await this.recordBackoff(client, { until: this.deps.now() + error.retryAfterSeconds * 1000, reason: 'rate_limited' });
          throw error;
        }
        if (!(error instanceof IdpUnavailableError)) throw error;
        const took = this.deps.now() - attemptStarted;
        if (took > this.options.idpAttemptMs + FREEZE_SLACK_MS) {
          // Frozen mid-attempt (a background refresh thawed in a later invocation): say nothing
          // to the fleet, and leave the retry to whoever asks next.
          this.deps.log.warn('an IdP attempt outlasted its own timeouts: the instance was frozen; no back-off recorded', { tookMs: took, error: describe(error) });
          throw error;
        }
        failedOnEvidence += 1;
        const pause = this.deps.random() * Math.min(this.options.retryCapMs, this.options.retryBaseMs * 2 ** attempt);
        const spent = Math.max(this.deps.now() - started, paused);
        if (attempt + 1 >= MAX_ATTEMPTS || spent + pause + this.options.idpAttemptMs > this.options.idpDeadlineMs) {
          // One failed attempt is not evidence enough to pause every instance.
          if (failedOnEvidence >= 2) {
            await this.recordBackoff(client, { until: this.deps.now() + this.options.failureBackoffSeconds * 1000, reason: 'unavailable' });
          }
          throw new IdpUnavailableError(`${error.message} (after ${attempt + 1} attempts)`, Math.max(error.retryAfterSeconds, this.options.failureBackoffSeconds), { cause: error });
        }
        this.deps.log.debug('retrying the IdP', { attempt: attempt + 1, pauseMs: Math.round(pause), error: describe(error) });
        await this.deps.sleep(pause);
        paused += pause;
      }
    }
  }

  /** `client`: a client's key, or an organization's of a client (tokenIdentity.ts `organizationKey`). */
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

  /**
   * The quota guard, per clock hour and across the fleet (atomic counters in the table):
   * - a refresh of a token in use (refresh-ahead, the schedule) may spend the client's whole cap;
   * - a miss may spend only the cap less the reserve; a miss, and every later refresh of the
   *   token it made, are charged to the caller's own budget, so no caller can starve another
   *   caller of the client, or the refresher;
   * - when Auth0 has told us what is left of its own quota, misses stop at the reserve.
   */
  private async checkQuota(client: string, request: TokenFetchRequest): Promise<void> {
    const cap = this.options.quotaPerClientPerHour;
    const now = this.deps.now();
    const hourStart = Math.floor(now / HOUR_MS) * HOUR_MS;
    const untilHour = Math.max(1, Math.ceil((hourStart + HOUR_MS - now) / 1000));
    const refresh = request.cause === 'refresh-ahead' || request.cause === 'scheduled';
    this.checkAuth0Count(client, refresh);
    // A caller's budget pays for its misses and for every refresh of the tokens they made.
    if (request.caller !== undefined && this.options.quotaPerCallerPerHour > 0) {
      const callerBudget = this.options.quotaPerCallerPerHour;
      if (!(await this.deps.limits.countFetch(counterKey(client, 'caller', request.caller), hourStart, callerBudget))) {
        this.deps.observer.quotaGuardTripped('caller');
        this.deps.log.warn('quota guard: a caller used up its hourly budget of new tokens', { clientKey: client, caller: request.caller, budget: callerBudget });
        throw new CallerQuotaError(`caller ${request.caller} caused ${callerBudget} fetches this hour for client ${client}`, untilHour, request.caller);
      }
    }
    if (cap <= 0) return;
    if (!refresh) {
      const missCap = Math.max(1, Math.floor(cap * (1 - this.options.quotaReserveRatio)));
      if (!(await this.deps.limits.countFetch(counterKey(client, 'miss'), hourStart, missCap))) this.tripped(client, missCap, 'miss', untilHour);
    }
    if (!(await this.deps.limits.countFetch(client, hourStart, cap))) this.tripped(client, cap, 'client', untilHour);
  }

  private tripped(client: string, cap: number, scope: 'miss' | 'client', retryAfterSeconds: number): never {
    this.deps.observer.quotaGuardTripped(scope);
    this.deps.log.error('quota guard: hourly cap on IdP fetches reached', { clientKey: client, cap, for: scope === 'miss' ? 'new tokens (the rest is kept for refreshes)' : 'every fetch' });
    throw new QuotaGuardError(`quota guard: ${cap} fetches this hour for client ${client} (${scope})`, retryAfterSeconds);
  }

  /**
   * Auth0's own count, while its bucket has not reset: once only the reserve is left, no new
   * tokens. Refreshes are never stopped on Auth0's word alone: with an unenforced quota Auth0
   * reports nothing left yet keeps issuing (docs/auth0-wire-behaviour.md §9), and its own 429
   * stops them when a quota is enforced. A reading's reset time is bounded by its bucket, so a
   * lying header cannot stop new tokens for longer than an hour (a day for `per_day`).
   */
  private checkAuth0Count(client: string, refresh: boolean): void {
    const known = this.readings.get(client);
    if (known === undefined || refresh) return;
    const { reading, at } = known;
    const period = reading.bucket === 'per_day' ? 86_400 : 3_600;
    const resetsAt = at + Math.min(reading.resetsInSeconds, period) * 1000;
    const now = this.deps.now();
    if (now >= resetsAt) {
      this.readings.delete(client);
      return;
    }
    const reserve = Math.ceil(reading.limit * this.options.quotaReserveRatio);
    if (reading.remaining <= reserve) {
      this.deps.observer.quotaGuardTripped('auth0');
      throw new QuotaGuardError(
        `Auth0 reports ${reading.remaining} of ${reading.limit} tokens left in its ${reading.bucket} quota for client ${client}`,
        Math.min(MAX_QUOTA_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil((resetsAt - now) / 1000))),
      );
    }
  }

  /** `key`: a client's, or one organization's of a client (whose reading is not the client's metric). */
  private noteQuota(key: string, clientName: string, reading: QuotaReading, publish = true): void {
    this.readings.set(key, { reading, at: this.deps.now() });
    if (publish) this.deps.observer.idpQuota(clientName, reading);
  }

  /** A grant mismatch asked again within `refusalMemoryMs`: the same answer, without the IdP. */
  private checkRemembered(refusalKey: string): void {
    const remembered = this.refusals.get(refusalKey);
    if (remembered === undefined) return;
    if (remembered.until > this.deps.now()) throw remembered.error;
    this.refusals.delete(refusalKey);
  }

  private remember(refusalKey: string, error: RememberedRefusal, forMs = this.options.refusalMemoryMs): void {
    if (forMs <= 0) return;
    const now = this.deps.now();
    if (this.refusals.size >= MAX_REMEMBERED_REFUSALS) {
      for (const [key, { until }] of this.refusals) if (until <= now) this.refusals.delete(key);
      // Still full: the oldest goes (insertion order).
      const oldest = this.refusals.keys().next();
      if (this.refusals.size >= MAX_REMEMBERED_REFUSALS && oldest.done !== true) this.refusals.delete(oldest.value);
    }
    this.refusals.set(refusalKey, { error, until: now + forMs });
  }
}

/** What a request is answered from memory with, without the IdP, for a while. */
type RememberedRefusal = IdpGrantMismatchError | IdpOrganizationMismatchError | IdpOrganizationQuotaError;

/** The internal code of a failure, for the IdpError metric: the vendor's own, or the type of anything else. */
function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'unknown';
}
