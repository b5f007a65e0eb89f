/**
 * The IdP as a good citizen (functions/core/goodCitizenEndpoint.ts): a TokenEndpoint wrapping a
 * fake inner TokenEndpoint. Retries, the fleet back-off, the quota guard and the rotation
 * fallback are driven by a fake clock (`{ now }` advanced by the injected `sleep`), an injected
 * `random`, and in-memory limits and credentials written here.
 */
import { describe, expect, it } from 'vitest';
import {
  IdpBackoffError,
  IdpOrganizationQuotaError,
  IdpRateLimitedError,
  IdpRejectedError,
  IdpUnavailableError,
  QuotaGuardError,
  idpRefusal,
} from '../../../functions/core/errors.js';
import type { ClientConfig } from '../../../functions/core/grants.js';
import { GoodCitizenEndpoint, type GoodCitizenOptions } from '../../../functions/core/goodCitizenEndpoint.js';
import type { Backoff, ClientCredentials, FetchCause, IssuedToken, QuotaReading, TokenEndpoint, TokenFetchRequest } from '../../../functions/core/ports.js';
import { clientKey, organizationKey } from '../../../functions/core/tokenIdentity.js';
import { RecordingLog } from '../../helpers/recordingLog.js';

const HOUR_MS = 3_600_000;
/** 10:00:00 on some day: the start of an hour */
const T0 = 472_222 * HOUR_MS;

const client: ClientConfig = {
  name: 'billing',
  origin: 'https://tenant.eu.auth0.com',
  issuer: 'https://tenant.eu.auth0.com/',
  secretId: 'auth0/billing',
  authMethod: 'client_secret_post',
  tokenFormat: 'jwt',
};
const current: ClientCredentials = { kind: 'secret', clientId: 'cid', clientSecret: 'old-secret' };
const reread: ClientCredentials = { kind: 'secret', clientId: 'cid', clientSecret: 'current-secret' };
const pending: ClientCredentials = { kind: 'secret', clientId: 'cid', clientSecret: 'pending-secret' };
const CLIENT_KEY = clientKey(client.issuer, current.clientId);

const defaults: GoodCitizenOptions = {
  idpDeadlineMs: 10_000,
  idpAttemptMs: 1_000,
  retryBaseMs: 100,
  retryCapMs: 1_000,
  failureBackoffSeconds: 30,
  quotaPerClientPerHour: 0,
  // The newer protections are off here and tested on their own below.
  quotaReserveRatio: 0,
  quotaPerCallerPerHour: 0,
  refusalMemoryMs: 0,
};

function request(extra: Partial<TokenFetchRequest> = {}): TokenFetchRequest {
  return { client, credentials: current, audience: 'https://api', scopes: ['read'], cause: 'miss', ...extra };
}

/** What one call of the inner endpoint does: answer, or fail. */
type Step = IssuedToken | Error | ((req: TokenFetchRequest) => IssuedToken | Error);

/** The inner TokenEndpoint: plays `steps` in order (the last one repeats) and records each request. */
class FakeIdp implements TokenEndpoint {
  readonly requests: TokenFetchRequest[] = [];
  constructor(
    private readonly steps: Step[],
    /** runs on every call: an attempt that takes time */
    private readonly onCall: () => void = () => undefined,
  ) {}
  async fetchToken(req: TokenFetchRequest): Promise<IssuedToken> {
    // A loop that never ends would spin on resolved promises and starve the test's timeout.
    if (this.requests.length >= 50) throw new Error('FakeIdp: called 50 times');
    this.requests.push(req);
    this.onCall();
    const step = this.steps[Math.min(this.requests.length - 1, this.steps.length - 1)];
    const outcome = typeof step === 'function' ? step(req) : step;
    if (outcome === undefined) throw new Error('FakeIdp: no steps');
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }
}

/** The fleet's limits, as the token table keeps them. */
class FakeLimits {
  readonly backoffs = new Map<string, Backoff>();
  readonly counts = new Map<string, number>();
  readonly calls = { getBackoff: 0, putBackoff: [] as { clientKey: string; backoff: Backoff }[], countFetch: [] as { clientKey: string; hourStartMs: number; cap: number }[] };
  /** what countFetch answers; undefined: count against the cap */
  answer: boolean | undefined;

  async getBackoff(key: string): Promise<Backoff | undefined> {
    this.calls.getBackoff += 1;
    return this.backoffs.get(key);
  }
  async putBackoff(key: string, backoff: Backoff): Promise<void> {
    this.calls.putBackoff.push({ clientKey: key, backoff });
    const known = this.backoffs.get(key);
    if (known === undefined || known.until < backoff.until) this.backoffs.set(key, backoff);
  }
  async countFetch(key: string, hourStartMs: number, cap: number): Promise<boolean> {
    this.calls.countFetch.push({ clientKey: key, hourStartMs, cap });
    if (this.answer !== undefined) return this.answer;
    const slot = `${key}#${hourStartMs}`;
    const n = this.counts.get(slot) ?? 0;
    if (n >= cap) return false;
    this.counts.set(slot, n + 1);
    return true;
  }
}

class FakeCredentials {
  readonly alternativesCalls: { secretId: string; rejected: ClientCredentials }[] = [];
  readonly preferred: { secretId: string; credentials: ClientCredentials }[] = [];
  constructor(private readonly others: ClientCredentials[] = []) {}
  async alternatives(secretId: string, rejected: ClientCredentials): Promise<ClientCredentials[]> {
    this.alternativesCalls.push({ secretId, rejected });
    return [...this.others];
  }
  prefer(secretId: string, credentials: ClientCredentials): void {
    this.preferred.push({ secretId, credentials });
  }
}

class RecordingObserver {
  readonly fetches: FetchCause[] = [];
  readonly errors: [code: string, idpError: string | undefined][] = [];
  readonly backoffs: string[] = [];
  backoffActiveCount = 0;
  quotaTrips = 0;
  idpFetch(cause: FetchCause): void {
    this.fetches.push(cause);
  }
  idpError(code: string, idpError?: string): void {
    this.errors.push([code, idpError]);
  }
  backoffRecorded(reason: string): void {
    this.backoffs.push(reason);
  }
  backoffActive(): void {
    this.backoffActiveCount += 1;
  }
  readonly quotaBudgets: string[] = [];
  readonly quotaReadings: [client: string, reading: QuotaReading][] = [];
  quotaGuardTripped(budget: string): void {
    this.quotaTrips += 1;
    this.quotaBudgets.push(budget);
  }
  idpQuota(client: string, reading: QuotaReading): void {
    this.quotaReadings.push([client, reading]);
  }
}

function token(accessToken = 'at-1'): IssuedToken {
  return { accessToken, scope: 'read', expiresAt: T0 / 1000 + 3600, fetchedAt: T0 };
}

const unavailable = () => new IdpUnavailableError('IdP answered 503', 1);

interface Setup {
  readonly steps: Step[];
  readonly options?: Partial<GoodCitizenOptions>;
  readonly alternatives?: ClientCredentials[];
  /** successive values of random(); the last one repeats */
  readonly randoms?: number[];
  readonly start?: number;
  /** clock time each inner call takes */
  readonly attemptTakesMs?: number;
}

function setup({ steps, options = {}, alternatives = [], randoms = [0.5], start = T0, attemptTakesMs = 0 }: Setup) {
  const clock = { now: start };
  const pauses: number[] = [];
  const sleep = async (ms: number): Promise<void> => {
    pauses.push(ms);
    clock.now += ms;
  };
  let draws = 0;
  const random = () => randoms[Math.min(draws++, randoms.length - 1)] ?? 0;
  const idp = new FakeIdp(steps, () => {
    clock.now += attemptTakesMs;
  });
  const limits = new FakeLimits();
  const credentials = new FakeCredentials(alternatives);
  const observer = new RecordingObserver();
  const log = new RecordingLog();
  const endpoint = new GoodCitizenEndpoint({ idp, limits, credentials, observer, log, now: () => clock.now, sleep, random }, { ...defaults, ...options });
  return { clock, sleep, pauses, idp, limits, credentials, observer, log, endpoint };
}

describe('transient failures', () => {
  it('retries an IdpUnavailableError and returns the token that follows', async () => {
    // Arrange
    const { endpoint, idp, observer, pauses } = setup({ steps: [unavailable(), unavailable(), token()] });
    // Act
    const issued = await endpoint.fetchToken(request());
    // Assert
    expect(issued.accessToken).toBe('at-1');
    expect(idp.requests).toHaveLength(3);
    expect(pauses).toHaveLength(2);
    expect(observer.fetches).toEqual(['miss', 'miss', 'miss']);
    expect(observer.errors).toEqual([
      ['ERR_IDP_UNAVAILABLE', undefined],
      ['ERR_IDP_UNAVAILABLE', undefined],
    ]);
  });

  it('pauses with full jitter: random() × min(cap, base × 2^attempt)', async () => {
    // Arrange: base 100, cap 300 → ceilings 100, 200, 300, 300
    const randoms = [0.5, 0.25, 0.9, 0.999];
    const { endpoint, pauses } = setup({ steps: [unavailable(), unavailable(), unavailable(), unavailable(), token()], options: { retryBaseMs: 100, retryCapMs: 300 }, randoms });
    // Act
    await endpoint.fetchToken(request());
    // Assert
    const ceilings = [100, 200, 300, 300];
    expect(pauses).toEqual(randoms.map((r, i) => r * (ceilings[i] ?? 0)));
    pauses.forEach((pause, i) => {
      expect(pause).toBeGreaterThanOrEqual(0);
      expect(pause).toBeLessThan(ceilings[i] ?? 0);
    });
  });

  it('makes at most 5 attempts, then records a fleet back-off and throws IdpUnavailableError', async () => {
    // Arrange: pauses of 0 ms, so that only the attempt count can stop it
    const { endpoint, idp, limits, observer, clock } = setup({ steps: [unavailable()], randoms: [0] });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    const error = await result.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdpUnavailableError);
    expect(error).not.toBeInstanceOf(IdpBackoffError);
    expect((error as IdpUnavailableError).message).toContain('after 5 attempts');
    expect((error as IdpUnavailableError).retryAfterSeconds).toBe(30);
    expect((error as IdpUnavailableError).cause).toBeInstanceOf(IdpUnavailableError);
    expect(idp.requests).toHaveLength(5);
    expect(limits.calls.putBackoff).toEqual([{ clientKey: CLIENT_KEY, backoff: { until: clock.now + 30_000, reason: 'unavailable' } }]);
    expect(observer.backoffs).toEqual(['unavailable']);
  });

  it('does not start a retry when spent + pause + idpAttemptMs would pass the deadline', async () => {
    // Arrange: random 1 → pauses 100, 200, 400; deadline 1200 with 500 per attempt:
    // 0+100+500 ≤ 1200, 100+200+500 ≤ 1200, 300+400+500 = 1200 ≤ 1200, 700+800+500 > 1200
    const { endpoint, idp, limits, pauses } = setup({
      steps: [unavailable()],
      options: { idpDeadlineMs: 1_200, idpAttemptMs: 500, retryBaseMs: 100, retryCapMs: 10_000 },
      randoms: [1],
    });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toThrow(/after 4 attempts/);
    expect(idp.requests).toHaveLength(4);
    expect(pauses).toEqual([100, 200, 400]);
    expect(limits.calls.putBackoff.map((p) => p.backoff.reason)).toEqual(['unavailable']);
  });

  it('stops one attempt earlier when the deadline is one ms shorter (the boundary)', async () => {
    // Arrange: as above with 1199: the third retry (300+400+500 = 1200) no longer fits
    const { endpoint, idp, pauses } = setup({
      steps: [unavailable()],
      options: { idpDeadlineMs: 1_199, idpAttemptMs: 500, retryBaseMs: 100, retryCapMs: 10_000 },
      randoms: [1],
    });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toThrow(/after 3 attempts/);
    expect(idp.requests).toHaveLength(3);
    expect(pauses).toEqual([100, 200]);
  });

  it('counts the time attempts take (the clock) against the deadline, not only the pauses', async () => {
    // Arrange: each attempt takes 400 ms of clock time
    const { endpoint, idp } = setup({
      steps: [unavailable()],
      attemptTakesMs: 400,
      options: { idpDeadlineMs: 1_200, idpAttemptMs: 500, retryBaseMs: 100, retryCapMs: 10_000 },
      randoms: [1],
    });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert: 400+100+500 ≤ 1200; 900+200+500 > 1200
    await expect(result).rejects.toThrow(IdpUnavailableError);
    expect(idp.requests).toHaveLength(2);
  });

  it('gives the caller the longer of the IdP Retry-After and the fleet back-off', async () => {
    // Arrange
    const { endpoint } = setup({ steps: [new IdpUnavailableError('IdP answered 503', 120)], randoms: [0], options: { failureBackoffSeconds: 30 } });
    // Act
    const error = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    // Assert
    expect((error as IdpUnavailableError).retryAfterSeconds).toBe(120);
  });
});

describe('rate limits and back-off', () => {
  it('does not retry an IdpRateLimitedError and records a rate_limited back-off for its Retry-After', async () => {
    // Arrange
    const limited = new IdpRateLimitedError('IdP answered 429', 45);
    const { endpoint, idp, limits, observer, pauses } = setup({ steps: [limited] });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toBe(limited);
    expect(idp.requests).toHaveLength(1);
    expect(pauses).toEqual([]);
    expect(limits.calls.putBackoff).toEqual([{ clientKey: CLIENT_KEY, backoff: { until: T0 + 45_000, reason: 'rate_limited' } }]);
    expect(observer.backoffs).toEqual(['rate_limited']);
    expect(observer.errors).toEqual([['ERR_IDP_RATE_LIMITED', undefined]]);
  });

  it('refuses with IdpBackoffError during an active back-off, without calling the IdP', async () => {
    // Arrange
    const { endpoint, idp, limits, observer } = setup({ steps: [token()] });
    limits.backoffs.set(CLIENT_KEY, { until: T0 + 10_500, reason: 'rate_limited' });
    // Act
    const error = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    // Assert
    expect(error).toBeInstanceOf(IdpBackoffError);
    expect((error as IdpBackoffError).retryAfterSeconds).toBe(11);
    expect(idp.requests).toEqual([]);
    expect(observer.backoffActiveCount).toBe(1);
    expect(observer.fetches).toEqual([]);
  });

  it('remembers the back-off: no second limits read while it lasts, and a read again once it lapses', async () => {
    // Arrange
    const { endpoint, idp, limits, sleep } = setup({ steps: [token()] });
    limits.backoffs.set(CLIENT_KEY, { until: T0 + 10_000, reason: 'unavailable' });
    await expect(endpoint.fetchToken(request())).rejects.toThrow(IdpBackoffError);
    // Act
    await sleep(9_999);
    const during = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    const readsDuring = limits.calls.getBackoff;
    await sleep(1);
    const after = await endpoint.fetchToken(request());
    // Assert
    expect(during).toBeInstanceOf(IdpBackoffError);
    expect((during as IdpBackoffError).retryAfterSeconds).toBe(1);
    expect(readsDuring).toBe(1);
    expect(limits.calls.getBackoff).toBe(2);
    expect(after.accessToken).toBe('at-1');
    expect(idp.requests).toHaveLength(1);
  });

  it('refuses the next fetch after its own 429 without reading the limits again', async () => {
    // Arrange
    const { endpoint, idp, limits } = setup({ steps: [new IdpRateLimitedError('IdP answered 429', 60), token()] });
    await expect(endpoint.fetchToken(request())).rejects.toThrow(IdpRateLimitedError);
    const readsBefore = limits.calls.getBackoff;
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toThrow(IdpBackoffError);
    expect(limits.calls.getBackoff).toBe(readsBefore);
    expect(idp.requests).toHaveLength(1);
  });
});

describe('quota guard', () => {
  it('refuses with QuotaGuardError and Retry-After to the top of the hour, without calling the IdP', async () => {
    // Arrange: 10:59:30.200
    const start = T0 + 59 * 60_000 + 30_200;
    const { endpoint, idp, limits, observer } = setup({ steps: [token()], options: { quotaPerClientPerHour: 100 }, start });
    limits.answer = false;
    // Act
    // (a refresh: only the client's whole cap applies; misses are below)
    const error = await endpoint.fetchToken(request({ cause: 'scheduled' })).catch((e: unknown) => e);
    // Assert
    expect(error).toBeInstanceOf(QuotaGuardError);
    expect((error as QuotaGuardError).retryAfterSeconds).toBe(30);
    expect(limits.calls.countFetch).toEqual([{ clientKey: CLIENT_KEY, hourStartMs: T0, cap: 100 }]);
    expect(idp.requests).toEqual([]);
    expect(observer.quotaTrips).toBe(1);
  });

  it('counts one fetch per call against the cap, and lets the fetch through below it', async () => {
    // Arrange
    const { endpoint, idp, limits } = setup({ steps: [token()], options: { quotaPerClientPerHour: 2 } });
    // Act
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i += 1) outcomes.push(await endpoint.fetchToken(request({ cause: 'refresh-ahead' })).then(() => 'ok', (e: unknown) => (e as Error).name));
    // Assert
    expect(outcomes).toEqual(['ok', 'ok', 'QuotaGuardError']);
    expect(idp.requests).toHaveLength(2);
    expect(limits.calls.countFetch).toHaveLength(3);
  });

  it('answers at least 1 s of Retry-After in the last ms of the hour', async () => {
    // Arrange
    const { endpoint, limits } = setup({ steps: [token()], options: { quotaPerClientPerHour: 1 }, start: T0 + HOUR_MS - 1 });
    limits.answer = false;
    // Act
    const error = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    // Assert
    expect((error as QuotaGuardError).retryAfterSeconds).toBe(1);
  });

  it('never counts with quotaPerClientPerHour: 0', async () => {
    // Arrange
    const { endpoint, limits, idp } = setup({ steps: [token()], options: { quotaPerClientPerHour: 0 } });
    limits.answer = false;
    // Act
    await endpoint.fetchToken(request());
    await endpoint.fetchToken(request());
    // Assert
    expect(limits.calls.countFetch).toEqual([]);
    expect(idp.requests).toHaveLength(2);
  });
});

describe('refused credentials (rotation fallback)', () => {
  // As the adapter translates it (idpRefusal): a 401 is a refused credential.
  const invalidClient = () => idpRefusal('invalid_client', 401, 'Unauthorized');

  it('tries the alternatives in order, once each, and prefers the one that works', async () => {
    // Arrange: the old secret and the re-read current one are refused; the pending one works
    const { endpoint, idp, credentials, observer } = setup({
      steps: [(req) => (req.credentials === pending ? token('at-pending') : invalidClient())],
      alternatives: [reread, pending],
    });
    // Act
    const issued = await endpoint.fetchToken(request());
    // Assert
    expect(issued.accessToken).toBe('at-pending');
    expect(idp.requests.map((r) => r.credentials)).toEqual([current, reread, pending]);
    expect(credentials.alternativesCalls).toEqual([{ secretId: 'auth0/billing', rejected: current }]);
    expect(credentials.preferred).toEqual([{ secretId: 'auth0/billing', credentials: pending }]);
    expect(observer.errors).toEqual([
      ['ERR_IDP_CREDENTIAL_REFUSED', 'invalid_client'],
      ['ERR_IDP_CREDENTIAL_REFUSED', 'invalid_client'],
    ]);
  });

  it('stops at the first alternative that works', async () => {
    // Arrange
    const { endpoint, idp, credentials } = setup({ steps: [invalidClient(), token('at-reread')], alternatives: [reread, pending] });
    // Act
    const issued = await endpoint.fetchToken(request());
    // Assert
    expect(issued.accessToken).toBe('at-reread');
    expect(idp.requests.map((r) => r.credentials)).toEqual([current, reread]);
    expect(credentials.preferred).toEqual([{ secretId: 'auth0/billing', credentials: reread }]);
  });

  it('throws the refusal once every alternative has been refused, each tried once', async () => {
    // Arrange
    const { endpoint, idp, credentials } = setup({ steps: [invalidClient()], alternatives: [reread, pending] });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toMatchObject({ name: 'IdpCredentialRefusedError', idpError: 'invalid_client' });
    expect(idp.requests.map((r) => r.credentials)).toEqual([current, reread, pending]);
    expect(credentials.alternativesCalls).toHaveLength(1);
    expect(credentials.preferred).toEqual([]);
  });

  it('lets the refusal through when there is no alternative', async () => {
    // Arrange
    const refusal = invalidClient();
    const { endpoint, idp, credentials, limits } = setup({ steps: [refusal], alternatives: [] });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toBe(refusal);
    expect(idp.requests).toHaveLength(1);
    expect(credentials.alternativesCalls).toHaveLength(1);
    expect(limits.calls.putBackoff).toEqual([]);
  });

  it('does not retry other refusals (access_denied)', async () => {
    // Arrange
    const denied = new IdpRejectedError('access_denied', 403, 'Client has not been granted scopes');
    const { endpoint, idp, credentials, observer, pauses } = setup({ steps: [denied, token()], alternatives: [reread] });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toBe(denied);
    expect(idp.requests).toHaveLength(1);
    expect(pauses).toEqual([]);
    expect(credentials.alternativesCalls).toEqual([]);
    expect(observer.errors).toEqual([['ERR_IDP_REJECTED', 'access_denied']]);
  });

  it('logs the fallback without the secret', async () => {
    // Arrange
    const { endpoint, log } = setup({ steps: [invalidClient(), token()], alternatives: [reread] });
    // Act
    await endpoint.fetchToken(request());
    // Assert
    const text = JSON.stringify(log.lines);
    expect(log.lines.some((l) => l.level === 'warn')).toBe(true);
    expect(text).not.toContain('old-secret');
    expect(text).not.toContain('current-secret');
  });
});

describe('observer', () => {
  it('passes request.cause to idpFetch on every attempt', async () => {
    // Arrange
    const { endpoint, observer, idp } = setup({ steps: [unavailable(), token()] });
    // Act
    await endpoint.fetchToken(request({ cause: 'scheduled' }));
    // Assert
    expect(observer.fetches).toEqual(['scheduled', 'scheduled']);
    expect(idp.requests.every((r) => r.cause === 'scheduled')).toBe(true);
  });

  it("reports 'miss' when the request has no cause", async () => {
    // Arrange
    const { endpoint, observer } = setup({ steps: [token()] });
    // Act
    await endpoint.fetchToken(request({ cause: undefined }));
    // Assert
    expect(observer.fetches).toEqual(['miss']);
  });

  it("reports a failure without a vendor code as 'unknown', and does not retry it", async () => {
    // Arrange
    const { endpoint, observer, idp } = setup({ steps: [new TypeError('bad')] });
    // Act
    const result = endpoint.fetchToken(request());
    // Assert
    await expect(result).rejects.toThrow(TypeError);
    expect(observer.errors).toEqual([['unknown', undefined]]);
    expect(idp.requests).toHaveLength(1);
  });
});

describe('quota guard: one caller cannot starve another, nor the refresher', () => {
  const options = { quotaPerClientPerHour: 8, quotaReserveRatio: 0.25, quotaPerCallerPerHour: 3 };

  it('a caller past its own budget gets CallerQuotaError (429); another caller of the client is served', async () => {
    // Arrange
    const { endpoint, idp, observer } = setup({ steps: [token()], options });
    const greedy = (i: number) => request({ caller: 'arn:aws:iam::1:role/greedy', scopes: [`s${i}`] });
    // Act
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i += 1) outcomes.push(await endpoint.fetchToken(greedy(i)).then(() => 'ok', (e: unknown) => (e as Error).name));
    const other = await endpoint.fetchToken(request({ caller: 'arn:aws:iam::1:role/polite' })).then(() => 'ok', (e: unknown) => (e as Error).name);
    // Assert
    expect(outcomes).toEqual(['ok', 'ok', 'ok', 'CallerQuotaError', 'CallerQuotaError']);
    expect(other).toBe('ok');
    expect(idp.requests).toHaveLength(4);
    expect(observer.quotaBudgets).toEqual(['caller', 'caller']);
  });

  it('misses may not spend the reserve; refreshes of tokens in use still can', async () => {
    // Arrange: cap 8, reserve 25 % → misses stop at 6; many callers, each within its budget
    const { endpoint, idp, observer } = setup({ steps: [token()], options });
    const miss = (i: number) => request({ caller: `arn:aws:iam::1:role/caller-${i}` });
    // Act
    const misses: string[] = [];
    for (let i = 0; i < 8; i += 1) misses.push(await endpoint.fetchToken(miss(i)).then(() => 'ok', (e: unknown) => (e as Error).name));
    const refreshes: string[] = [];
    for (let i = 0; i < 3; i += 1) refreshes.push(await endpoint.fetchToken(request({ cause: 'scheduled' })).then(() => 'ok', (e: unknown) => (e as Error).name));
    // Assert
    expect(misses).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'QuotaGuardError', 'QuotaGuardError']);
    expect(refreshes).toEqual(['ok', 'ok', 'QuotaGuardError']); // 6 + 2 = the whole cap of 8
    expect(idp.requests).toHaveLength(8);
    expect(observer.quotaBudgets).toEqual(['miss', 'miss', 'client']);
  });

  it('follows Auth0\'s own count when it sends one: new tokens stop at the reserve; refreshes are left to Auth0\'s own 429', async () => {
    // Arrange: Auth0 says 2 of 8 left this hour (reserve 25 % of 8 = 2), then 0 (an unenforced
    // quota reports 0 and keeps issuing: docs/auth0-wire-behaviour.md §9)
    const reading = { bucket: 'per_hour', limit: 8, remaining: 2, resetsInSeconds: 600 };
    const { endpoint, idp, observer, clock } = setup({ steps: [{ ...token(), quota: reading }, { ...token(), quota: { ...reading, remaining: 0 } }, token()], options });
    // Act
    await endpoint.fetchToken(request({ cause: 'scheduled' })); // learns: 2 left
    const miss = await endpoint.fetchToken(request({ caller: 'a' })).catch((e: unknown) => e);
    await endpoint.fetchToken(request({ cause: 'scheduled' })); // a refresh may; learns: 0 left
    const refresh = await endpoint.fetchToken(request({ cause: 'scheduled' })).then(() => 'ok');
    clock.now += 600_000;
    const afterReset = await endpoint.fetchToken(request({ caller: 'a' })).then(() => 'ok');
    // Assert
    expect(miss).toBeInstanceOf(QuotaGuardError);
    expect((miss as QuotaGuardError).retryAfterSeconds).toBe(600);
    expect(refresh).toBe('ok');
    expect(afterReset).toBe('ok');
    expect(idp.requests).toHaveLength(4);
    expect(observer.quotaReadings.map(([, r]) => r.remaining)).toEqual([2, 0]);
    expect(observer.quotaBudgets).toEqual(['auth0']);
  });

  it('a lying reset time stops new tokens for at most the bucket\'s period, with at most an hour of Retry-After', async () => {
    // Arrange: a 200 claims nothing is left for the next ~31 million years
    const lie = { bucket: 'per_hour', limit: 8, remaining: 0, resetsInSeconds: 999_999_999_999_999 };
    const { endpoint, clock } = setup({ steps: [{ ...token(), quota: lie }, token()], options });
    await endpoint.fetchToken(request({ cause: 'scheduled' }));
    // Act
    const refused = await endpoint.fetchToken(request({ caller: 'a' })).catch((e: unknown) => e);
    clock.now += 3_600_000;
    const later = await endpoint.fetchToken(request({ caller: 'a' })).then(() => 'ok');
    // Assert
    expect((refused as QuotaGuardError).retryAfterSeconds).toBe(3600);
    expect(later).toBe('ok');
  });
});

describe('refusals of an audience or scope (the grants and Auth0 disagree)', () => {
  it('are remembered for refusalMemoryMs: asking again costs no IdP call and no quota', async () => {
    // Arrange
    const refusal = () => idpRefusal('access_denied', 403, 'Client has not been granted scopes: read');
    const { endpoint, idp, limits, clock, log } = setup({ steps: [refusal(), token()], options: { refusalMemoryMs: 60_000, quotaPerClientPerHour: 100 } });
    // Act
    const first = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    const again = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    const otherScope = await endpoint.fetchToken(request({ scopes: ['write'] })).then(() => 'ok');
    clock.now += 60_000;
    const later = await endpoint.fetchToken(request()).then(() => 'ok');
    // Assert
    expect(first).toMatchObject({ name: 'IdpGrantMismatchError', code: 'ERR_IDP_GRANT_MISMATCH', status: 502, oauthError: 'access_denied' });
    expect(again).toBe(first);
    expect(otherScope).toBe('ok');
    expect(later).toBe('ok');
    expect(idp.requests).toHaveLength(3);
    expect(limits.calls.countFetch.filter((c) => c.clientKey === CLIENT_KEY)).toHaveLength(3); // the remembered one counted nothing
    expect(log.lines.some((l) => l.level === 'error' && l.message.includes('disagree'))).toBe(true);
  });
});

describe('a back-off only on evidence about the IdP', () => {
  it('one failed attempt (no room to retry) records no fleet back-off', async () => {
    // Arrange: a deadline with room for one attempt only
    const { endpoint, idp, limits } = setup({ steps: [unavailable()], options: { idpDeadlineMs: 1_000, idpAttemptMs: 1_000 } });
    // Act
    const error = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    // Assert
    expect(error).toBeInstanceOf(IdpUnavailableError);
    expect(idp.requests).toHaveLength(1);
    expect(limits.calls.putBackoff).toEqual([]);
  });

  it('an attempt that outlasted its own timeouts (a frozen instance) records nothing and is not retried', async () => {
    // Arrange: each attempt "takes" 10 s on the clock, against 1 s of timeouts: the instance was frozen
    const { endpoint, idp, limits, observer } = setup({ steps: [unavailable()], attemptTakesMs: 10_000 });
    // Act
    const error = await endpoint.fetchToken(request()).catch((e: unknown) => e);
    // Assert
    expect(error).toBeInstanceOf(IdpUnavailableError);
    expect(idp.requests).toHaveLength(1);
    expect(limits.calls.putBackoff).toEqual([]);
    expect(observer.backoffs).toEqual([]);
  });

  it('a 401 with access_denied (Auth0\'s answer to a wrong or rotated secret) tries the secret as it is now', async () => {
    // Arrange
    const { endpoint, idp, credentials } = setup({
      steps: [idpRefusal('access_denied', 401, 'Unauthorized'), token()],
      alternatives: [pending],
    });
    // Act
    await endpoint.fetchToken(request());
    // Assert
    expect(idp.requests.map((r) => r.credentials)).toEqual([current, pending]);
    expect(credentials.preferred).toEqual([{ secretId: client.secretId, credentials: pending }]);
  });
});

describe('organizations (issue 12): one organization\'s quota pauses that organization only', () => {
  const ACME = 'org_acme0000000001';
  const GLOBEX = 'org_globex00000001';

  it('a 429 for the organization\'s quota records a back-off for that organization of the client; others and no organization go on', async () => {
    // Arrange: acme's quota is used up (Auth0-Organization-Quota-Limit r=0); then every call succeeds
    const { endpoint, idp, limits, observer } = setup({ steps: [new IdpOrganizationQuotaError('429 organization quota', 120, ACME), token()] });
    // Act
    const first = await endpoint.fetchToken(request({ organization: ACME })).catch((e: unknown) => e);
    const again = await endpoint.fetchToken(request({ organization: ACME, scopes: ['write'] })).catch((e: unknown) => e);
    const globex = await endpoint.fetchToken(request({ organization: GLOBEX })).then(() => 'ok');
    const none = await endpoint.fetchToken(request()).then(() => 'ok');
    // Assert
    expect(first).toBeInstanceOf(IdpOrganizationQuotaError);
    expect(again).toBeInstanceOf(IdpBackoffError);
    expect([globex, none]).toEqual(['ok', 'ok']);
    expect(idp.requests.map((r) => r.organization ?? null)).toEqual([ACME, GLOBEX, null]);
    expect(limits.calls.putBackoff.map((p) => [p.clientKey, p.backoff.reason])).toEqual([[organizationKey(CLIENT_KEY, ACME), 'organization_quota']]);
    expect(limits.backoffs.has(CLIENT_KEY)).toBe(false);
    expect(observer.backoffs).toEqual(['organization_quota']);
  });

  it('Auth0\'s count of an organization\'s quota stops new tokens for that organization only', async () => {
    // Arrange: a 200 for acme says acme's quota has nothing left; the client's own is fine
    const empty = { bucket: 'per_hour', limit: 8, remaining: 0, resetsInSeconds: 600 };
    const plenty = { ...empty, remaining: 7 };
    const { endpoint, idp } = setup({ steps: [{ ...token(), quota: plenty, organizationQuota: empty }, token()], options: { quotaReserveRatio: 0.25 } });
    // Act
    await endpoint.fetchToken(request({ organization: ACME }));
    const acme = await endpoint.fetchToken(request({ organization: ACME, scopes: ['write'] })).catch((e: unknown) => e);
    const globex = await endpoint.fetchToken(request({ organization: GLOBEX })).then(() => 'ok');
    const none = await endpoint.fetchToken(request()).then(() => 'ok');
    // Assert
    expect(acme).toBeInstanceOf(QuotaGuardError);
    expect([globex, none]).toEqual(['ok', 'ok']);
    expect(idp.requests).toHaveLength(3);
  });

  it('a remembered refusal is per organization', async () => {
    const { endpoint, idp } = setup({ steps: [idpRefusal('access_denied', 403, 'refused'), token()], options: { refusalMemoryMs: 60_000 } });
    await expect(endpoint.fetchToken(request({ organization: ACME }))).rejects.toBeInstanceOf(IdpRejectedError);
    await expect(endpoint.fetchToken(request({ organization: ACME }))).rejects.toBeInstanceOf(IdpRejectedError);
    await endpoint.fetchToken(request({ organization: GLOBEX }));
    expect(idp.requests.map((r) => r.organization)).toEqual([ACME, GLOBEX]);
  });
});
