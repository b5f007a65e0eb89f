/**
 * What every Lambda entry point does around its own logic, in one place: the logger gets the
 * Lambda context (request id, function name, cold start), the `ColdStart` metric is emitted on an
 * instance's first invocation, and the buffered metrics are flushed once per invocation, also when
 * the handler throws. The same three things Powertools' own `injectLambdaContext` (Logger) and
 * `logMetrics({ captureColdStartMetric: true })` (Metrics) middlewares do, without Middy or
 * decorators (@aws-lambda-powertools/metrics, Metrics.captureColdStartMetric and
 * publishStoredMetrics).
 */
import type { Context } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';

/** A Lambda handler as the entry points export it; the context is absent when a test or the local stack calls it. */
export type LambdaHandler<Event, Result> = (event: Event, context?: Context) => Promise<Result>;

export interface Observability {
  readonly logger: Pick<Logger, 'addContext'>;
  readonly metrics: Pick<Metrics, 'captureColdStartMetric' | 'publishStoredMetrics'>;
}

export function withObservability<Event, Result>(observability: Observability, handler: LambdaHandler<Event, Result>): LambdaHandler<Event, Result> {
  const { logger, metrics } = observability;
  return async (event, context) => {
    if (context !== undefined) logger.addContext(context);
    // Emits only on the first invocation of this Metrics instance (Powertools tracks it), and
    // only in an on-demand Lambda environment (AWS_LAMBDA_INITIALIZATION_TYPE).
    metrics.captureColdStartMetric(context?.functionName);
    try {
      return await handler(event, context);
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}
