/**
 * The core's observations as Powertools metrics (CloudWatch EMF). Dimensioned counts (cache hit
 * by tier, IdP error by code) are emitted as single metrics so each keeps its own dimension;
 * plain counts accumulate and are flushed once per invocation by the handler.
 */
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { CacheTier, Observer } from '../core/ports.js';

export class PowertoolsObserver implements Observer {
  constructor(private readonly metrics: Metrics) {}

  cacheHit(tier: CacheTier): void {
    this.dimensioned('CacheHit', 'tier', tier);
  }

  cacheMiss(): void {
    this.metrics.addMetric('CacheMiss', MetricUnit.Count, 1);
  }

  idpFetch(): void {
    this.metrics.addMetric('IdpFetch', MetricUnit.Count, 1);
  }

  idpError(code: string): void {
    // Twice: all codes together (what an alarm watches; an alarm cannot sum across a
    // dimension) and per code (what the dashboard breaks down).
    this.metrics.addMetric('IdpError', MetricUnit.Count, 1);
    this.dimensioned('IdpError', 'code', code);
  }

  leaseWait(): void {
    this.metrics.addMetric('LeaseWait', MetricUnit.Count, 1);
  }

  leaseTimeout(): void {
    this.metrics.addMetric('LeaseTimeout', MetricUnit.Count, 1);
  }

  private dimensioned(name: string, dimension: string, value: string): void {
    const single = this.metrics.singleMetric();
    single.addDimension(dimension, value);
    single.addMetric(name, MetricUnit.Count, 1);
  }
}
