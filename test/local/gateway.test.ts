import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenVendorClient } from '../../client/index.js';
import { startLocalGateway, type LocalCredential, type LocalGateway } from '../../local/gateway.js';
import { startLocalSts } from '../../local/sts.js';
import { decodeProof, requestBinding } from '../../local/stsProof.js';

const REGION = 'eu-west-1';
const ORDERS_ROLE: LocalCredential = {
  accessKeyId: 'AKIAORDERSAPI0000001',
  secretAccessKey: 'orders-api-secret-key',
  principalArn: 'arn:aws:iam::123456789012:role/teams/orders/orders-api',
  sessionName: 'orders-session',
};
const OPS_USER: LocalCredential = {
  accessKeyId: 'AKIAOPSUSER000000001',
  secretAccessKey: 'ops-user-secret-key',
  principalArn: 'arn:aws:iam::210987654321:user/ops/alice',
};

/** What the stub handler does next, and what it saw. */
let nextResult: (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
const calls: Array<{ event: APIGatewayProxyEvent; context: Context; remainingMs: number }> = [];
const okResult = async (): Promise<APIGatewayProxyResult> => ({ statusCode: 200, headers: { 'Content-Type': 'application/json' }, body: '{"ok":true}' });

let gateway: LocalGateway;
beforeAll(async () => {
  gateway = await startLocalGateway({
    region: REGION,
    stage: 'local',
    credentials: [ORDERS_ROLE, OPS_USER],
    accountId: '999999999999',
    handler: async (event, context) => {
      calls.push({ event, context, remainingMs: context.getRemainingTimeInMillis() });
      return nextResult(event, context);
    },
  });
});
afterAll(async () => {
  await gateway.close();
});
beforeEach(() => {
  calls.length = 0;
  nextResult = okResult;
});

/** Send a request signed with SignatureV4 directly, the way the client does it. */
async function signedFetch(
  pathAndQuery: string,
  init: { method?: string; body?: string | Uint8Array; contentType?: string; credential?: LocalCredential; query?: Record<string, string | string[]> } = {},
): Promise<Response> {
  const url = new URL(`${gateway.url}${pathAndQuery}`);
  const credential = init.credential ?? ORDERS_ROLE;
  const signer = new SignatureV4({ service: 'execute-api', region: REGION, credentials: credential, sha256: Hash.bind(null, 'sha256'), applyChecksum: false });
  const headers: Record<string, string> = { host: url.host };
  if (init.contentType !== undefined) headers['content-type'] = init.contentType;
  const signed = await signer.sign(
    new HttpRequest({ method: init.method ?? 'POST', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: url.pathname, query: init.query ?? {}, headers, body: init.body }),
  );
  const { host: _host, ...sendHeaders } = signed.headers;
  return fetch(url, { method: init.method ?? 'POST', headers: sendHeaders, ...(init.body === undefined ? {} : { body: init.body }) });
}

describe('local gateway: AWS_IAM authorization', () => {
  it('a request signed by TokenVendorClient reaches the handler as the assumed role (STS ARN without the role path)', async () => {
    nextResult = async () => ({
      statusCode: 200,
      headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
      body: JSON.stringify({ access_token: 'tok-1', token_type: 'Bearer', expires_in: 3600, scope: 'orders:read' }),
    });
    const sts = await startLocalSts({ credentials: [ORDERS_ROLE], region: REGION });
    try {
      const client = new TokenVendorClient({ endpoint: gateway.url, region: REGION, credentials: ORDERS_ROLE, serverId: 'token-vendor-test', stsEndpoint: sts.origin });

      const token = await client.getToken({ audience: 'https://orders.example.com', scope: 'orders:read' });

      expect(token.accessToken).toBe('tok-1');
      expect(calls).toHaveLength(1);
      // The client's proof, sent on as the vendor sends it, proves the same identity the gateway reports.
      const proof = calls[0]!.event.headers['X-Token-Vendor-Proof'] ?? calls[0]!.event.headers['x-token-vendor-proof'];
      const answer = await fetch(decodeProof(proof ?? ''), {
        headers: { 'x-token-vendor-server-id': 'token-vendor-test', 'x-token-vendor-request': requestBinding('https://orders.example.com', 'orders:read'), accept: 'application/json' },
      });
      expect(answer.status).toBe(200);
      expect(await answer.json()).toMatchObject({
        GetCallerIdentityResponse: { GetCallerIdentityResult: { Arn: calls[0]!.event.requestContext.identity.userArn, UserId: calls[0]!.event.requestContext.identity.caller } },
      });
    } finally {
      await sts.close();
    }
    const { event } = calls[0]!;
    expect(event.requestContext.identity.userArn).toBe('arn:aws:sts::123456789012:assumed-role/orders-api/orders-session');
    expect(event.requestContext.identity.caller).toMatch(/^AROA[A-Z2-7]{17}:orders-session$/);
    expect(event.requestContext.identity.user).toBe(event.requestContext.identity.caller);
    expect(event.requestContext.identity.accountId).toBe('123456789012');
    expect(event.requestContext.identity.accessKey).toBe(ORDERS_ROLE.accessKeyId);
    expect(event.requestContext.identity.sourceIp).toBe('127.0.0.1');
    expect(event.requestContext.identity.userAgent).toEqual(expect.any(String));
    expect(event).toMatchObject({
      resource: '/token',
      path: '/token',
      httpMethod: 'POST',
      pathParameters: null,
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      stageVariables: null,
      isBase64Encoded: false,
      requestContext: { accountId: '999999999999', stage: 'local', path: '/local/token', resourcePath: '/token', httpMethod: 'POST', protocol: 'HTTP/1.1' },
    });
    expect(JSON.parse(event.body ?? '')).toEqual({ audience: 'https://orders.example.com', scope: 'orders:read' });
    expect(event.requestContext.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(event.requestContext.requestTimeEpoch).toBeGreaterThan(Date.now() - 10_000);
  });

  it('an IAM user appears as itself, with an AIDA user ID as caller', async () => {
    const res = await signedFetch('/token', { credential: OPS_USER, body: '{}', contentType: 'application/json' });

    expect(res.status).toBe(200);
    const identity = calls[0]!.event.requestContext.identity;
    expect(identity.userArn).toBe(OPS_USER.principalArn);
    expect(identity.caller).toMatch(/^AIDA[A-Z2-7]{17}$/);
    expect(identity.user).toBe(identity.caller);
    expect(identity.accountId).toBe('210987654321');
  });

  it('unsigned -> 403 OAuth body, the handler is not called', async () => {
    const res = await fetch(`${gateway.url}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });

    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ error: 'access_denied', error_description: expect.stringContaining('Missing Authentication Token') });
    expect(calls).toHaveLength(0);
  });

  it('bad signature (wrong secret) -> 403 OAuth body without secrets, the handler is not called', async () => {
    const forged = { ...ORDERS_ROLE, secretAccessKey: 'guessed-secret' };

    const res = await signedFetch('/token', { credential: forged, body: '{}', contentType: 'application/json' });

    expect(res.status).toBe(403);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ error: 'access_denied', error_description: expect.stringContaining('signature') });
    expect(text).not.toContain(ORDERS_ROLE.secretAccessKey);
    expect(text).not.toContain('guessed-secret');
    expect(calls).toHaveLength(0);
  });

  it('unknown key -> 403', async () => {
    const stranger = { ...ORDERS_ROLE, accessKeyId: 'AKIASTRANGER00000001' };

    const res = await signedFetch('/token', { credential: stranger, body: '{}', contentType: 'application/json' });

    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'access_denied' });
    expect(calls).toHaveLength(0);
  });

  it('outside /<stage>/ -> 403 OAuth body, even when signed', async () => {
    const url = new URL(gateway.url);

    const unstaged = await fetch(`${url.origin}/token`, { method: 'POST', body: '{}' });
    const root = await fetch(`${url.origin}/local`, { method: 'GET' });

    expect(unstaged.status).toBe(403);
    expect(await unstaged.json()).toMatchObject({ error: 'access_denied' });
    expect(root.status).toBe(403);
    expect(calls).toHaveLength(0);
  });
});

describe('local gateway: the proxy event and the response', () => {
  it('a non-JSON content type arrives base64-encoded, byte for byte', async () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 251, 255]);

    const res = await signedFetch('/upload', { body: bytes, contentType: 'application/octet-stream' });

    expect(res.status).toBe(200);
    const { event } = calls[0]!;
    expect(event.isBase64Encoded).toBe(true);
    expect(Buffer.from(event.body ?? '', 'base64')).toEqual(Buffer.from(bytes));
    expect(event.resource).toBe('/{proxy+}');
    expect(event.pathParameters).toEqual({ proxy: 'upload' });
  });

  it('query strings and encoded paths reach the handler decoded, repeated keys in multiValue', async () => {
    const res = await signedFetch('/things/a%20b?x=1&x=2&y=hello%20world', { method: 'GET', query: { x: ['1', '2'], y: 'hello world' } });

    expect(res.status).toBe(200);
    const { event } = calls[0]!;
    expect(event.path).toBe('/things/a%20b');
    expect(event.pathParameters).toEqual({ proxy: 'things/a b' });
    expect(event.queryStringParameters).toEqual({ x: '2', y: 'hello world' });
    expect(event.multiValueQueryStringParameters).toEqual({ x: ['1', '2'], y: ['hello world'] });
    expect(event.body).toBeNull();
    expect(event.headers['X-Forwarded-For'] ?? event.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(event.multiValueHeaders['x-amz-date']).toHaveLength(1);
  });

  it('hands the handler a Lambda context with a 29 s budget', async () => {
    await signedFetch('/token', { body: '{}', contentType: 'application/json' });

    const { context, remainingMs, event } = calls[0]!;
    expect(context.functionName).toBe('vend');
    expect(context.awsRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(context.awsRequestId).not.toBe(event.requestContext.requestId);
    expect(context.invokedFunctionArn).toBe('arn:aws:lambda:eu-west-1:999999999999:function:vend');
    expect(remainingMs).toBeGreaterThan(25_000);
    expect(remainingMs).toBeLessThanOrEqual(29_000);
  });

  it('writes status, headers, multi-value headers and a base64 body back', async () => {
    nextResult = async () => ({
      statusCode: 503,
      headers: { 'Retry-After': '7', 'Content-Type': 'application/octet-stream' },
      multiValueHeaders: { 'X-Multi': ['a', 'b'] },
      body: Buffer.from([1, 2, 3]).toString('base64'),
      isBase64Encoded: true,
    });

    const res = await signedFetch('/token', { body: '{}', contentType: 'application/json' });

    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(res.headers.get('x-multi')).toBe('a, b');
    expect(res.headers.get('x-amzn-requestid')).toBe(calls[0]!.event.requestContext.requestId);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('handler throws -> 502 OAuth body, the error goes to stderr only', async () => {
    const stderr = vi.spyOn(console, 'error').mockImplementation(() => {});
    nextResult = async () => {
      throw new Error('boom: secret detail');
    };

    try {
      const res = await signedFetch('/token', { body: '{}', contentType: 'application/json' });

      expect(res.status).toBe(502);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({ error: 'server_error', error_description: 'Internal server error' });
      expect(text).not.toContain('secret detail');
      expect(stderr).toHaveBeenCalled();
    } finally {
      stderr.mockRestore();
    }
  });

  it('a malformed proxy result -> 502', async () => {
    const stderr = vi.spyOn(console, 'error').mockImplementation(() => {});
    nextResult = async () => ({ statusCode: 'two hundred' }) as unknown as APIGatewayProxyResult;

    try {
      const res = await signedFetch('/token', { body: '{}', contentType: 'application/json' });

      expect(res.status).toBe(502);
      expect(await res.json()).toEqual({ error: 'server_error', error_description: 'Internal server error' });
    } finally {
      stderr.mockRestore();
    }
  });
});

describe('local gateway: limits and lifecycle', () => {
  it('a body over maxBodyBytes -> 413; a handler slower than the integration timeout -> 504', async () => {
    const small = await startLocalGateway({
      region: REGION,
      stage: 'local',
      credentials: [ORDERS_ROLE],
      maxBodyBytes: 16,
      integrationTimeoutMs: 50,
      handler: () => new Promise((resolve) => setTimeout(() => resolve({ statusCode: 200, body: '' }), 500)),
    });
    try {
      const tooLarge = await fetch(`${small.url}/token`, { method: 'POST', body: 'x'.repeat(64) });
      const slow = await signedFetchTo(small, '/token');

      expect(tooLarge.status).toBe(413);
      expect(await tooLarge.json()).toMatchObject({ error: 'invalid_request' });
      expect(slow.status).toBe(504);
      expect(await slow.json()).toEqual({ error: 'temporarily_unavailable', error_description: 'Endpoint request timed out' });
    } finally {
      await small.close();
    }
  });

  it('close() closes open keep-alive sockets and resolves; the port stops answering', async () => {
    const other = await startLocalGateway({ region: REGION, stage: 'dev', credentials: [ORDERS_ROLE], handler: okResult });
    const first = await fetch(`${other.url}/token`); // leaves a keep-alive socket open
    await first.arrayBuffer();

    await other.close();

    await expect(fetch(`${other.url}/token`)).rejects.toThrow();
  });

  it('refuses a principal ARN that is neither a role nor a user', async () => {
    const bad = { ...ORDERS_ROLE, principalArn: 'arn:aws:iam::123456789012:root' };

    await expect(startLocalGateway({ region: REGION, stage: 'local', credentials: [bad], handler: okResult })).rejects.toThrow(/principalArn/);
  });
});

async function signedFetchTo(target: LocalGateway, path: string): Promise<Response> {
  const url = new URL(`${target.url}${path}`);
  const signer = new SignatureV4({ service: 'execute-api', region: REGION, credentials: ORDERS_ROLE, sha256: Hash.bind(null, 'sha256'), applyChecksum: false });
  const signed = await signer.sign(
    new HttpRequest({ method: 'POST', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: url.pathname, headers: { host: url.host, 'content-type': 'application/json' }, body: '{}' }),
  );
  const { host: _host, ...headers } = signed.headers;
  return fetch(url, { method: 'POST', headers, body: '{}' });
}
