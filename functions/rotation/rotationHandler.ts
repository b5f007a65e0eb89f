/**
 * The `rotate` entry point's logic: Secrets Manager invokes it once per rotation step. A step
 * that fails throws, so Secrets Manager records the failure and retries; the detail goes to the
 * log (never a secret: the rotator handles values, the log gets names and versions). The Lambda
 * context, the cold-start metric and the metrics flush (the token service's metrics for the
 * rotator's Management API token among them) are {@link withObservability}'s.
 */
import type { Context } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { RotationEvent, RotationStep, SecretRotator } from '../core/rotation.js';
import { describe } from '../core/errors.js';
import { withObservability } from '../lambda/withObservability.js';

const STEPS: readonly RotationStep[] = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'];

export interface RotationHandlerDeps {
  readonly rotator: Pick<SecretRotator, 'handle'>;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export type RotationHandler = (event: unknown, context?: Context) => Promise<void>;

export function createRotationHandler(deps: RotationHandlerDeps): RotationHandler {
  return withObservability(deps, async (event) => {
    const rotation = parseEvent(event);
    const single = deps.metrics.singleMetric();
    single.addDimension('step', rotation.Step);
    try {
      await deps.rotator.handle(rotation);
      single.addMetric('RotationStep', MetricUnit.Count, 1);
    } catch (error) {
      single.addMetric('RotationStepFailed', MetricUnit.Count, 1);
      deps.logger.error('rotation step failed', { step: rotation.Step, secretId: rotation.SecretId, error: describe(error) });
      throw error;
    }
  });
}

function parseEvent(event: unknown): RotationEvent {
  const e = (event ?? {}) as Record<string, unknown>;
  if (typeof e.SecretId !== 'string' || e.SecretId === '') throw new Error('rotation event: SecretId must be a non-empty string');
  if (typeof e.ClientRequestToken !== 'string' || !/^[\w-]{32,64}$/.test(e.ClientRequestToken)) {
    throw new Error('rotation event: ClientRequestToken must be 32-64 characters of [A-Za-z0-9_-]');
  }
  if (!STEPS.includes(e.Step as RotationStep)) throw new Error(`rotation event: Step must be one of ${STEPS.join(', ')}`);
  return { SecretId: e.SecretId, ClientRequestToken: e.ClientRequestToken, Step: e.Step as RotationStep };
}
