/**
 * The scheduled refresher: on a schedule, replace — before their refresh point — the tokens
 * callers used recently, and fetch in advance the ones a grant marks `prefetch`, so that in steady
 * state no caller request ever waits on the IdP. Each refresh goes through the token service
 * (fleet lease, back-off, quota guard), so the refresher never races the vend path.
 */
import type { AuthorizedRequest, GrantBook } from './grants.js';
import type { Log, TokenRecord, TokenStore } from './ports.js';
import { describe } from './errors.js';
import type { RefreshOutcome, TokenService } from './tokenService.js';

export interface RefresherOptions {
  /** refresh tokens whose refresh point falls within this window (at least two schedule periods) */
  readonly lookaheadMs: number;
  /** tokens not used for this long are left to expire */
  readonly recentUseMs: number;
  /** refreshes run at most this many at a time */
  readonly concurrency: number;
}

export interface RefreshReport {
  readonly considered: number;
  readonly refreshed: number;
  readonly fresh: number;
  readonly busy: number;
  readonly failed: number;
  /** not used within the window: left to expire */
  readonly idle: number;
  /** the grants no longer allow it: not refreshed */
  readonly ungranted: number;
}

export class Refresher {
  private readonly now: () => number;

  constructor(
    private readonly deps: { service: TokenService; store: TokenStore; grants: GrantBook; log: Log; now?: () => number },
    private readonly options: RefresherOptions,
  ) {
    this.now = deps.now ?? Date.now;
  }

  /** Every cached token (ops' status and refresh read it; never the token value itself). */
  list(): Promise<TokenRecord[]> {
    return this.deps.store.listTokens();
  }

  async run(): Promise<RefreshReport> {
    const tokens = await this.deps.store.listTokens();
    // Each token's refresh is charged to the caller that made it (its origin), if any.
    const work = new Map<string, { request: AuthorizedRequest; origin?: string | undefined }>();
    let idle = 0;
    let ungranted = 0;
    for (const token of tokens) {
      if ((token.lastUsedAt ?? token.fetchedAt) < this.now() - this.options.recentUseMs) {
        idle += 1;
        continue;
      }
      // Per organization: a token is refreshed for the organization it was fetched for, while the
      // grants still allow that organization.
      const request = this.deps.grants.requestFor(token.client, token.audience, token.scopes, token.organization);
      if (request === undefined) {
        ungranted += 1;
        continue;
      }
      work.set(workKey(request), { request, origin: token.origin });
    }
    for (const request of this.deps.grants.prefetchRequests()) work.set(workKey(request), { request });

    const outcomes: RefreshOutcome[] = [];
    const queue = [...work.values()];
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
        const { request, origin } = item;
        try {
          outcomes.push(await this.deps.service.refresh(request, this.options.lookaheadMs, origin));
        } catch (error) {
          // e.g. the client's secret cannot be read: this token fails, the others go on.
          this.deps.log.error('scheduled refresh failed', { client: request.client.name, audience: request.audience, organization: request.organization, error: describe(error) });
          outcomes.push('failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.options.concurrency) }, worker));

    const count = (outcome: RefreshOutcome) => outcomes.filter((o) => o === outcome).length;
    const report: RefreshReport = {
      considered: work.size,
      refreshed: count('refreshed'),
      fresh: count('fresh'),
      busy: count('busy'),
      failed: count('failed'),
      idle,
      ungranted,
    };
    this.deps.log.info('scheduled refresh done', { ...report });
    return report;
  }
}

function workKey(request: AuthorizedRequest): string {
  return JSON.stringify([request.client.name, request.audience, request.scopes, request.organization ?? null]);
}
