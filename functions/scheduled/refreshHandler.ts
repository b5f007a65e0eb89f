/**
 * The `refresh` entry point's logic: an EventBridge schedule invokes it; it runs one refresher
 * pass and reports what it did as metrics. The event's content is not used. The Lambda context,
 * the cold-start metric and the metrics flush are {@link withObservability}'s.
 */
import type { Context } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { Refresher, RefreshReport } from '../core/refresher.js';
import { describe } from '../core/errors.js';
import { withObservability } from '../lambda/withObservability.js';

export interface RefreshHandlerDeps {
  readonly refresher: Pick<Refresher, 'run'>;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export type RefreshHandler = (event: unknown, context?: Context) => Promise<RefreshReport>;

export function createRefreshHandler(deps: RefreshHandlerDeps): RefreshHandler {
  return withObservability(deps, async () => {
    try {
      const report = await deps.refresher.run();
      deps.metrics.addMetric('ScheduledRefreshed', MetricUnit.Count, report.refreshed);
      deps.metrics.addMetric('ScheduledRefreshFailed', MetricUnit.Count, report.failed);
      return report;
    } catch (error) {
      // The pass could not run at all (DynamoDB down): fail the invocation so Lambda's Errors
      // metric and its alarm see it; tokens are still refreshed ahead by callers' reads.
      deps.logger.error('scheduled refresh could not run', { error: describe(error) });
      throw new Error('scheduled refresh could not run');
    }
  });
}
