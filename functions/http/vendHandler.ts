/**
 * The vend entry point's logic, thin over the core (STYLE.md §1): parse the event, call the
 * service, shape the response, map errors in one place. Two kinds of event arrive:
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
import { errorBody, jsonResponse, type OAuthErrorBody } from './responses.js';
import { parseHttpBody, parseVendBody } from './vendRequest.js';

export interface VendHandlerDeps {
  readonly service: Pick<TokenService, 'vend'>;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
}

export type VendHandler = (event: unknown, context?: Context) => Promise<APIGatewayProxyResult | VendedToken | OAuthErrorBody>;

export function createVendHandler(deps: VendHandlerDeps): VendHandler {
  const now = deps.now ?? Date.now;

  return async (event, context) => {
    const started = now();
    if (context !== undefined) deps.logger.addContext(context);
    const viaApi = isApiGatewayEvent(event);
    let status = 500;
    try {
      if (viaApi) {
        const response = await handleHttp(event);
        status = response.statusCode;
        return response;
      }
      const result = await handleDirect(event);
      status = result.status;
      return result.body;
    } finally {
      deps.metrics.addMetric('Request', MetricUnit.Count, 1);
      deps.metrics.addMetric('Latency', MetricUnit.Milliseconds, now() - started);
      const single = deps.metrics.singleMetric();
      single.addDimension('status', `${Math.floor(status / 100)}xx`);
      single.addMetric('Response', MetricUnit.Count, 1);
      deps.metrics.publishStoredMetrics();
      deps.logger.resetKeys();
    }
  };

  async function handleHttp(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
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
      return jsonResponse(200, token);
    } catch (error) {
      const { status, body, headers } = report(error);
      return jsonResponse(status, body, headers);
    }
  }

  /** Same bodies as the API; an error is returned, not thrown, so the invoker reads `error`. */
  async function handleDirect(event: unknown): Promise<{ status: number; body: VendedToken | OAuthErrorBody }> {
    try {
      const body = parseVendBody(event);
      deps.logger.appendKeys({ caller: 'direct-invoke' });
      return { status: 200, body: await vend({ kind: 'direct' }, body.audience, body.scope) };
    } catch (error) {
      const { status, body } = report(error);
      return { status, body };
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
      deps.logger.error('request failed', { status: shaped.status, error: describeChain(error) });
    } else {
      deps.logger.info('request refused', { status: shaped.status, error: shaped.body.error, reason: shaped.body.error_description });
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
