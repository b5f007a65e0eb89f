/**
 * The vend entry point's logic, thin over the core (the handler layer in ARCHITECTURE.md): parse
 * the event, call the service, shape the response, map errors in one place. The Lambda context,
 * the cold-start metric and the metrics flush are {@link withObservability}'s. Two kinds of event
 * arrive:
 * - API Gateway REST (AWS_IAM): the caller is `requestContext.identity.userArn`;
 * - a direct invocation `{ "audience", "scope" }` (scheduled jobs): no identity, authorized by
 *   `lambda:InvokeFunction`, limited to grants marked `directInvoke`.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { Logger } from '@aws-lambda-powertools/logger';
import { AccessDeniedError, MethodNotAllowedError, NotFoundError, VendorError, describe } from '../core/errors.js';
import { callerFromArn, type Caller } from '../core/principal.js';
import type { TokenService, VendedToken } from '../core/tokenService.js';
import { withObservability } from '../lambda/withObservability.js';
import { errorBody, jsonResponse, type OAuthErrorBody } from './responses.js';
import { parseHttpBody, parseVendBody } from './vendRequest.js';

export interface VendHandlerDeps {
  readonly service: Pick<TokenService, 'vend'>;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
}

export type VendHandler = (event: unknown, context?: Context) => Promise<APIGatewayProxyResult | VendedToken | OAuthErrorBody>;

/** What one invocation answered: the HTTP status and the internal code (`OK` for a token). */
interface Outcome {
  readonly status: number;
  readonly code: string;
}

const OK = 'OK';

export function createVendHandler(deps: VendHandlerDeps): VendHandler {
  const now = deps.now ?? Date.now;

  return withObservability(deps, async (event) => {
    const started = now();
    const viaApi = isApiGatewayEvent(event);
    let outcome: Outcome = { status: 500, code: 'ERR_UNEXPECTED' };
    try {
      if (viaApi) {
        const { response, code } = await handleHttp(event);
        outcome = { status: response.statusCode, code };
        return response;
      }
      const result = await handleDirect(event);
      outcome = result;
      return result.body;
    } finally {
      deps.metrics.addMetric('Request', MetricUnit.Count, 1);
      deps.metrics.addMetric('Latency', MetricUnit.Milliseconds, now() - started);
      // By status class for the 5xx alarm and the dashboard, and, for a failure, by the internal
      // code, so a rate limit, a quota trip and a lease timeout (all 503 on the wire) are told
      // apart. A token needs no second line: it is the 2xx count, and the warm path stays one
      // metric line per request.
      const byStatus = deps.metrics.singleMetric();
      byStatus.addDimension('status', `${Math.floor(outcome.status / 100)}xx`);
      byStatus.addMetric('Response', MetricUnit.Count, 1);
      if (outcome.code !== OK) {
        const byCode = deps.metrics.singleMetric();
        byCode.addDimension('code', outcome.code);
        byCode.addMetric('Response', MetricUnit.Count, 1);
      }
      deps.logger.resetKeys();
    }
  });

  async function handleHttp(event: APIGatewayProxyEvent): Promise<{ response: APIGatewayProxyResult; code: string }> {
    try {
      const route = event.resource === '/{proxy+}' || event.resource === undefined ? event.path : event.resource;
      if (route !== '/token') throw new NotFoundError(`No route ${String(route).slice(0, 100)}; POST /token.`);
      if (event.httpMethod !== 'POST') throw new MethodNotAllowedError('POST');
      const caller = callerFromArn(event.requestContext?.identity?.userArn);
      if (caller === undefined) {
        throw new AccessDeniedError('No IAM caller identity: sign the request with SigV4 (AWS_IAM) as an IAM role or user.');
      }
      deps.logger.appendKeys({ caller: caller.arn });
      const body = parseHttpBody(event.body, event.isBase64Encoded, header(event, 'content-type'));
      const token = await vend(caller, body.audience, body.scope);
      return { response: jsonResponse(200, token), code: OK };
    } catch (error) {
      const { status, body, headers, code } = report(error);
      return { response: jsonResponse(status, body, headers), code };
    }
  }

  /** Same bodies as the API; an error is returned, not thrown, so the invoker reads `error`. */
  async function handleDirect(event: unknown): Promise<Outcome & { body: VendedToken | OAuthErrorBody }> {
    try {
      const body = parseVendBody(event);
      deps.logger.appendKeys({ caller: 'direct-invoke' });
      return { status: 200, code: OK, body: await vend({ kind: 'direct' }, body.audience, body.scope) };
    } catch (error) {
      const { status, body, code } = report(error);
      return { status, code, body };
    }
  }

  async function vend(caller: Caller, audience: string, scope: string | undefined): Promise<VendedToken> {
    const token = await deps.service.vend({ caller, audience, scope });
    deps.logger.info('vended token', { audience, scope: token.scope, expiresIn: token.expires_in });
    return token;
  }

  /** Log (detail for 5xx, a line for 4xx) and shape the public error. */
  function report(error: unknown): ReturnType<typeof errorBody> {
    const shaped = errorBody(error);
    if (shaped.status >= 500) {
      deps.logger.error('request failed', { status: shaped.status, code: shaped.code, error: describeChain(error) });
    } else {
      deps.logger.info('request refused', { status: shaped.status, code: shaped.code, error: shaped.body.error, reason: shaped.body.error_description });
    }
    return shaped;
  }
}

function isApiGatewayEvent(event: unknown): event is APIGatewayProxyEvent {
  return typeof event === 'object' && event !== null && 'requestContext' in event && 'httpMethod' in event;
}

function header(event: APIGatewayProxyEvent, name: string): string | undefined {
  const headers = event.headers ?? {};
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name && typeof value === 'string') return value;
  }
  return undefined;
}

/** The error and its causes, names and messages only: never an SDK object with its request. */
function describeChain(error: unknown): Array<ReturnType<typeof describe>> {
  const chain: Array<ReturnType<typeof describe>> = [];
  let current: unknown = error;
  while (current !== undefined && chain.length < 5) {
    chain.push(describe(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  if (!(error instanceof VendorError)) chain.unshift({ name: 'Unexpected', message: 'unhandled error in vend' });
  return chain;
}
