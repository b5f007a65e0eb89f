/**
 * The wrapper every entry point shares (functions/lambda/withObservability.ts), through the three
 * handlers that use it, with a real Powertools Logger and Metrics whose output (EMF documents and
 * log lines) is captured instead of printed: the Lambda context reaches the logger, the
 * ColdStart metric is emitted once per instance, and the stored metrics are flushed exactly once
 * per invocation, also when the handler throws.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RefreshReport } from '../../functions/core/refresher.js';
import type { RotationEvent } from '../../functions/core/rotation.js';
import { createVendHandler } from '../../functions/http/vendHandler.js';
import { withObservability } from '../../functions/lambda/withObservability.js';
import { createRotationHandler } from '../../functions/rotation/rotationHandler.js';
import { createRefreshHandler } from '../../functions/scheduled/refreshHandler.js';
import { apiEvent } from '../helpers/events.js';
import { fakeIdentity, fakeProof } from '../helpers/fakeIdentity.js';

/** What Lambda passes a handler. */
function lambdaContext(functionName: string, awsRequestId: string): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:eu-west-1:111122223333:function:${functionName}`,
    memoryLimitInMB: '512',
    awsRequestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: '2026/01/01/[$LATEST]0123456789abcdef',
    getRemainingTimeInMillis: () => 28_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

type Doc = Record<string, unknown> & { _aws?: unknown };

let written: string[] = [];
beforeEach(() => {
  // Powertools counts a cold start only in an on-demand Lambda environment, read when a Metrics is built.
  vi.stubEnv('AWS_LAMBDA_INITIALIZATION_TYPE', 'on-demand');
  vi.stubEnv('POWERTOOLS_DEV', '');
  written = [];
  // EMF documents go to stdout; log lines to stdout or, from WARN up, stderr (with Powertools' own
  // warnings, such as "No application metrics to publish", which are not JSON).
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
  }
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

/** Every JSON document written to stdout or stderr since the test began. */
function documents(): Doc[] {
  return written
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Doc);
}
const metricDocs = () => documents().filter((d) => d._aws !== undefined);
const logLines = () => documents().filter((d) => d._aws === undefined);
const coldStarts = () => metricDocs().filter((d) => 'ColdStart' in d);

/** A real Logger and Metrics, as a composition root builds them, with spies on the wrapper's calls. */
function observability() {
  const logger = new Logger({ serviceName: 'token-vendor-test', logLevel: 'INFO' });
  const metrics = new Metrics({ namespace: 'TokenVendorTest', serviceName: 'token-vendor-test' });
  return { logger, metrics, flushes: vi.spyOn(metrics, 'publishStoredMetrics'), addContext: vi.spyOn(logger, 'addContext') };
}

const REPORT: RefreshReport = { considered: 2, refreshed: 1, fresh: 1, busy: 0, failed: 0, idle: 0, ungranted: 0 };
const ROTATION: RotationEvent = { SecretId: 'token-vendor/orders-m2m', ClientRequestToken: '3f1c2a5e-7b64-4e8f-9d2a-0c1b2d3e4f56', Step: 'createSecret' };

/**
 * Each handler, built over real Powertools objects: `invoke(fail)` runs one invocation that
 * succeeds or fails the way that handler fails (vend answers an error; the others throw), and
 * `metric` is one the invocation stores, so its flush shows in the output.
 */
const handlers = {
  vend: (o: ReturnType<typeof observability>) => {
    let fail = false;
    const handler = createVendHandler({
      ...o,
      identity: fakeIdentity(),
      service: {
        async vend() {
          if (fail) throw new Error('boom');
          return { access_token: 'eyJ.test.token', token_type: 'Bearer' as const, expires_in: 3599, scope: 'read:orders' };
        },
      },
    });
    return {
      metric: 'Request',
      throws: false,
      invoke: (failing: boolean, context?: Context) => {
        fail = failing;
        return handler(apiEvent({ headers: { 'X-Token-Vendor-Proof': fakeProof('arn:aws:sts::111122223333:assumed-role/checkout-service/i-0123456789abcdef0') } }), context);
      },
    };
  },
  refresh: (o: ReturnType<typeof observability>) => {
    let fail = false;
    const handler = createRefreshHandler({
      ...o,
      refresher: {
        async run() {
          if (fail) throw new Error('DynamoDB down');
          return REPORT;
        },
      },
    });
    return {
      metric: 'ScheduledRefreshed',
      throws: true,
      invoke: (failing: boolean, context?: Context) => {
        fail = failing;
        return handler({}, context);
      },
    };
  },
  rotate: (o: ReturnType<typeof observability>) => {
    let fail = false;
    const handler = createRotationHandler({
      ...o,
      rotator: {
        async handle() {
          // what the token service's observer does while the rotator gets its Management API token
          o.metrics.addMetric('IdpFetch', MetricUnit.Count, 1);
          if (fail) throw new Error('Management API down');
        },
      },
    });
    return {
      metric: 'IdpFetch',
      throws: true,
      invoke: (failing: boolean, context?: Context) => {
        fail = failing;
        return handler(ROTATION, context);
      },
    };
  },
};

/** Run an invocation; a thrown error is returned instead, for the handlers that throw. */
async function settle(call: Promise<unknown>): Promise<unknown> {
  try {
    return await call;
  } catch (error) {
    return error;
  }
}

describe.each(Object.entries(handlers))('the %s handler', (name, build) => {
  const fn = `token-vendor-test-${name}`;

  it('flushes the stored metrics exactly once per invocation, also when it fails', async () => {
    const o = observability();
    const { invoke, metric, throws } = build(o);
    const outcomes: Array<[number, number, boolean]> = [];
    for (const [i, failing] of [false, true, false, true].entries()) {
      const result = await settle(invoke(failing, lambdaContext(fn, `request-${i}`)));
      outcomes.push([o.flushes.mock.calls.length, metricDocs().filter((d) => metric in d).length, result instanceof Error]);
    }
    // one flush after each invocation, carrying what it stored (a failed refresh pass stores no
    // ScheduledRefreshed); the failed invocations threw where that handler throws
    const failedStores = name === 'refresh' ? 0 : 1;
    expect(outcomes).toEqual([
      [1, 1, false],
      [2, 1 + failedStores, throws],
      [3, 2 + failedStores, false],
      [4, 2 + 2 * failedStores, throws],
    ]);
  });

  it('emits the ColdStart metric once per instance, with the function name', async () => {
    const first = observability();
    const { invoke } = build(first);
    for (const i of [0, 1, 2]) await settle(invoke(i === 1, lambdaContext(fn, `request-${i}`)));
    expect(coldStarts()).toHaveLength(1);
    expect(coldStarts()[0]).toMatchObject({ ColdStart: 1, function_name: fn });

    // a new instance (new Metrics): its own first invocation is a cold start again
    const second = observability();
    await settle(build(second).invoke(false, lambdaContext(fn, 'request-3')));
    await settle(build(second).invoke(false, lambdaContext(fn, 'request-4')));
    expect(coldStarts()).toHaveLength(2);
  });

  it('adds the Lambda context to the logger when there is one, and only then', async () => {
    const o = observability();
    const { invoke } = build(o);
    const context = lambdaContext(fn, 'request-with-context');
    // failing: every handler logs the failure, so the line shows what the logger knew
    await settle(invoke(true, context));
    expect(o.addContext.mock.calls).toEqual([[context]]);
    const line = logLines().find((l) => l.function_request_id === 'request-with-context');
    expect(line).toMatchObject({ level: 'ERROR', function_name: fn, cold_start: true });

    await settle(invoke(true));
    expect(o.addContext).toHaveBeenCalledTimes(1);
    expect(o.flushes).toHaveBeenCalledTimes(2);
  });
});

describe('withObservability', () => {
  it('returns what the handler returns, and rethrows what it throws, after the flush', async () => {
    const o = observability();
    const order: string[] = [];
    o.flushes.mockImplementation(() => {
      order.push('flush');
      return o.metrics;
    });
    const ok = withObservability(o, async (event: number) => {
      order.push('handler');
      return event * 2;
    });
    expect(await ok(21)).toBe(42);
    const boom = new Error('boom');
    const failing = withObservability(o, async () => {
      order.push('handler');
      throw boom;
    });
    await expect(failing(undefined)).rejects.toBe(boom);
    expect(order).toEqual(['handler', 'flush', 'handler', 'flush']);
  });

  it('flushes a rotation step that fails before it starts (a malformed event)', async () => {
    const o = observability();
    const handler = createRotationHandler({ ...o, rotator: { handle: async () => undefined } });
    await expect(handler({ SecretId: '' })).rejects.toThrow('SecretId');
    expect(o.flushes).toHaveBeenCalledTimes(1);
  });
});
