/**
 * The core's observations as Powertools metrics (CloudWatch EMF). A count that has a breakdown
 * (cache hit by tier, IdP fetch by cause, IdP error by code...) is emitted twice: plain, for
 * alarms (an alarm cannot sum across a dimension), and as a single metric carrying the dimension,
 * for the dashboard. Plain counts accumulate and are flushed once per invocation by the handler.
 */
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { CacheTier, FetchCause, Observer, QuotaBudget, QuotaReading } from '../core/ports.js';

export class PowertoolsObserver implements Observer {
  constructor(private readonly metrics: Metrics) {}

  cacheHit(tier: CacheTier): void {
    this.dimensioned('CacheHit', 'tier', tier);
  }

  cacheMiss(): void {
    this.count('CacheMiss');
  }

  idpFetch(cause: FetchCause): void {
    this.count('IdpFetch');
    this.dimensioned('IdpFetch', 'cause', cause);
  }

  idpError(code: string, idpError?: string): void {
    this.count('IdpError');
    // The internal code tells a rate limit from a back-off from a quota trip; a refusal's own
    // OAuth error (invalid_client after a rotation, access_denied for a missing client grant) is
    // its own metric, so neither dimension multiplies the other.
    this.dimensioned('IdpError', 'code', code);
    if (idpError !== undefined) this.dimensioned('IdpRefusal', 'idpError', idpError);
  }

  leaseWait(): void {
    this.count('LeaseWait');
  }

  leaseTimeout(): void {
    this.count('LeaseTimeout');
  }

  backoffRecorded(reason: string): void {
    this.count('IdpBackoff');
    this.dimensioned('IdpBackoff', 'reason', reason);
  }

  backoffActive(): void {
    this.count('BackoffActive');
  }

  quotaGuardTripped(budget: QuotaBudget): void {
    this.count('QuotaGuardTripped');
    this.dimensioned('QuotaGuardTripped', 'budget', budget);
  }

  /**
   * What Auth0 says is left of a client's quota, as a gauge per client: the alarm on it fires well
   * before the 429s start (infra/observability.yml).
   */
  idpQuota(client: string, reading: QuotaReading): void {
    const percent = reading.limit > 0 ? (100 * reading.remaining) / reading.limit : 0;
    // Plain as well, for the alarm: its Minimum over a period is the lowest any client reached.
    this.metrics.addMetric('IdpQuotaRemainingPercent', MetricUnit.Percent, percent);
    const single = this.metrics.singleMetric();
    single.addDimension('client', client);
    single.addMetric('IdpQuotaRemainingPercent', MetricUnit.Percent, percent);
    const remaining = this.metrics.singleMetric();
    remaining.addDimension('client', client);
    remaining.addMetric('IdpQuotaRemaining', MetricUnit.Count, reading.remaining);
  }

  storeDegraded(operation: string): void {
    this.count('DegradedMode');
    this.dimensioned('DegradedMode', 'operation', operation);
  }

  sealedRecordRejected(defect: string): void {
    this.count('SealedRecordRejected');
    this.dimensioned('SealedRecordRejected', 'defect', defect);
  }

  refreshFailed(cause: FetchCause): void {
    this.count('RefreshFailed');
    this.dimensioned('RefreshFailed', 'cause', cause);
  }

  private count(name: string): void {
    this.metrics.addMetric(name, MetricUnit.Count, 1);
  }

  private dimensioned(name: string, dimension: string, value: string): void {
    const single = this.metrics.singleMetric();
    single.addDimension(dimension, value);
    single.addMetric(name, MetricUnit.Count, 1);
  }
}
