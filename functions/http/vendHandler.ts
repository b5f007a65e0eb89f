/**
 * The vend entry point's logic, thin over the core (the handler layer in ARCHITECTURE.md): parse
 * the event, call the service, shape the response, map errors in one place. The Lambda context,
 * the cold-start metric and the metrics flush are {@link withObservability}'s. Two kinds of event
 * arrive, and in both the caller is the principal its identity proof proves (docs/identity-proof.md),
 * never a field of the event: anyone allowed `lambda:InvokeFunction` can write an event shaped like
 * API Gateway's, naming any role in `requestContext.identity.userArn`.
 * - API Gateway REST (AWS_IAM): the proof in the `X-Token-Vendor-Proof` header; the `userArn` API
 *   Gateway verified must be the same principal;
 * - a direct invocation `{ "audience", "scope", "organization", "proof" }` (scheduled jobs): the principal's grants.
 * Which of the two an event is cannot be proven (its shape is the invoker's choice), so grants do
 * not depend on it: `channel` is for the log only.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { Logger } from '@aws-lambda-powertools/logger';
import { MethodNotAllowedError, NotFoundError, ProofRefusedError, VendorError, describe } from '../core/errors.js';
import { PROOF_HEADER } from '../core/identityProof.js';
import type { IdentityVerifier } from '../core/ports.js';
import { callerFromArn, type Caller, type Channel } from '../core/principal.js';
import type { TokenService, VendedToken } from '../core/tokenService.js';
import { withObservability } from '../lambda/withObservability.js';
import { errorBody, jsonResponse, type OAuthErrorBody } from './responses.js';
import { parseDirectBody, parseHttpBody, type VendBody } from './vendRequest.js';

export interface VendHandlerDeps {
  readonly service: Pick<TokenService, 'vend'>;
  readonly identity: IdentityVerifier;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
}

/** A direct invocation's error: the OAuth body, with the status and Retry-After the API would send. */
export interface DirectErrorBody extends OAuthErrorBody {
  readonly status: number;
  readonly retry_after?: number;
}

export type VendHandler = (event: unknown, context?: Context) => Promise<APIGatewayProxyResult | VendedToken | DirectErrorBody>;

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
      const body = parseHttpBody(event.body, event.isBase64Encoded, header(event, 'content-type'));
      const caller = await prove(header(event, PROOF_HEADER), body, 'api');
      // API Gateway's AWS_IAM verified this ARN, if API Gateway built the event. A direct invoker
      // can write any ARN here, so it never grants anything: it can only make a proof fail, when
      // the request was signed by one principal and the proof by another.
      const signer = event.requestContext?.identity?.userArn;
      if (signer !== undefined && signer !== null && callerFromArn(signer)?.arn !== caller.arn) {
        throw new ProofRefusedError('The identity proof was made by another principal than the one that signed the request.');
      }
      const token = await vend(caller, body);
      return { response: jsonResponse(200, token), code: OK };
    } catch (error) {
      const { status, body, headers, code } = report(error);
      return { response: jsonResponse(status, body, headers), code };
    }
  }

  /** Same bodies as the API; an error is returned, not thrown, so the invoker reads `error`. */
  async function handleDirect(event: unknown): Promise<Outcome & { body: VendedToken | DirectErrorBody }> {
    try {
      const body = parseDirectBody(event);
      const caller = await prove(body.proof, body, 'direct');
      return { status: 200, code: OK, body: await vend(caller, body) };
    } catch (error) {
      const { status, body, code, headers } = report(error);
      const retryAfter = headers['Retry-After'];
      return { status, code, body: { ...body, status, ...(retryAfter !== undefined ? { retry_after: Number(retryAfter) } : {}) } };
    }
  }

  /** The principal the proof proves for this request (the only identity the vendor trusts). */
  async function prove(proof: unknown, body: VendBody, channel: Channel): Promise<Caller> {
    const proven = await deps.identity.verify(proof, { audience: body.audience, scope: body.scope, organization: body.organization });
    deps.logger.appendKeys({ caller: proven.arn, channel });
    return { ...proven, channel };
  }

  async function vend(caller: Caller, body: VendBody): Promise<VendedToken> {
    const token = await deps.service.vend({ caller, audience: body.audience, scope: body.scope, organization: body.organization });
    deps.logger.info('vended token', { audience: body.audience, scope: token.scope, ...(body.organization !== undefined ? { organization: body.organization } : {}), expiresIn: token.expires_in });
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
