/** Realistic API Gateway REST (v1 proxy) events, as API Gateway sends them with AWS_IAM auth. */
import type { APIGatewayProxyEvent } from 'aws-lambda';

export interface EventOptions {
  body?: string | null;
  isBase64Encoded?: boolean;
  userArn?: string | null;
  method?: string;
  path?: string;
  resource?: string;
  headers?: Record<string, string>;
}

export function apiEvent(opts: EventOptions = {}): APIGatewayProxyEvent {
  const path = opts.path ?? '/token';
  const method = opts.method ?? 'POST';
  const headers = { 'Content-Type': 'application/json', Host: 'abc123.execute-api.eu-west-1.amazonaws.com', ...opts.headers };
  const userArn = opts.userArn === undefined ? 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0123456789abcdef0' : opts.userArn;
  return {
    resource: opts.resource ?? (path === '/token' ? '/token' : '/{proxy+}'),
    path,
    httpMethod: method,
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: path === '/token' ? null : { proxy: path.slice(1) },
    stageVariables: null,
    body: opts.body === undefined ? JSON.stringify({ audience: 'https://orders.example.com' }) : opts.body,
    isBase64Encoded: opts.isBase64Encoded ?? false,
    requestContext: {
      accountId: '111122223333',
      apiId: 'abc123',
      authorizer: null,
      protocol: 'HTTP/1.1',
      httpMethod: method,
      path: `/prod${path}`,
      stage: 'prod',
      requestId: 'c6af9ac6-7b61-11e6-9a41-93e8deadbeef',
      requestTimeEpoch: 1_700_000_000_000,
      resourceId: 'abcdef',
      resourcePath: path === '/token' ? '/token' : '/{proxy+}',
      identity: {
        accessKey: 'ASIAEXAMPLE',
        accountId: userArn === null ? null : '111122223333',
        apiKey: null,
        apiKeyId: null,
        caller: userArn === null ? null : 'AROAEXAMPLEID:i-0123456789abcdef0',
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: '10.0.0.1',
        user: userArn === null ? null : 'AROAEXAMPLEID:i-0123456789abcdef0',
        userAgent: 'token-vendor-client',
        userArn,
      },
    },
  } as APIGatewayProxyEvent;
}
