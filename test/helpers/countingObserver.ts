/** An Observer that counts what the core reports, for tests and benchmarks that assert on it. */
import type { CacheTier, FetchCause, Observer } from '../../functions/core/ports.js';

export interface Counts {
  hits: Record<CacheTier, number>;
  miss: number;
  fetches: Partial<Record<FetchCause, number>>;
  errors: Record<string, number>;
  leaseWait: number;
  degraded: number;
  refreshFailed: number;
}

export function countingObserver(): { observer: Observer; counts: Counts } {
  const counts: Counts = { hits: { memory: 0, dynamodb: 0 }, miss: 0, fetches: {}, errors: {}, leaseWait: 0, degraded: 0, refreshFailed: 0 };
  const observer: Observer = {
    cacheHit: (tier) => void (counts.hits[tier] += 1),
    cacheMiss: () => void (counts.miss += 1),
    idpFetch: (cause) => void (counts.fetches[cause] = (counts.fetches[cause] ?? 0) + 1),
    // By the vendor's internal code, and by the IdP's own `error` for refusals (invalid_client...).
    idpError: (code, idpError) => {
      for (const key of idpError === undefined ? [code] : [code, idpError]) counts.errors[key] = (counts.errors[key] ?? 0) + 1;
    },
    leaseWait: () => void (counts.leaseWait += 1),
    leaseTimeout() {},
    backoffRecorded() {},
    backoffActive() {},
    quotaGuardTripped() {},
    idpQuota() {},
    sealedRecordRejected() {},
    storeDegraded: () => void (counts.degraded += 1),
    refreshFailed: () => void (counts.refreshFailed += 1),
  };
  return { observer, counts };
}
