import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalLambdaInvoke, type LocalLambdaInvoke } from '../../local/lambdaInvoke.js';
import type { LocalCredential } from '../../local/sigv4.js';

const REGION = 'eu-west-1';
const CALLER: LocalCredential = { accessKeyId: 'AKIASCHEDULER0000001', secretAccessKey: 'scheduler-secret', principalArn: 'arn:aws:iam::111122223333:role/reporting-daily' };
const seen: Array<{ event: unknown; functionName: string }> = [];

let lambda: LocalLambdaInvoke;
beforeAll(async () => {
  lambda = await startLocalLambdaInvoke({
    region: REGION,
    credentials: [CALLER],
    functions: {
      vend: async (event, context) => {
        seen.push({ event, functionName: context.functionName });
        return { token_type: 'Bearer', echo: event };
      },
      boom: async () => {
        throw new TypeError('handler broke');
      },
    },
  });
});
afterAll(async () => {
  await lambda?.close();
});

async function invoke(functionName: string, payload: string, opts: { credential?: { accessKeyId: string; secretAccessKey: string }; service?: string; signed?: boolean } = {}) {
  const path = `/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`;
  const { port } = lambda;
  let headers: Record<string, string> = { host: `127.0.0.1:${port}`, 'content-type': 'application/json', 'x-amz-invocation-type': 'RequestResponse' };
  if (opts.signed !== false) {
    const signer = new SignatureV4({ service: opts.service ?? 'lambda', region: REGION, credentials: opts.credential ?? CALLER, sha256: Hash.bind(null, 'sha256') });
    const signed = await signer.sign(new HttpRequest({ method: 'POST', protocol: 'http:', hostname: '127.0.0.1', port, path, headers, body: payload }));
    headers = signed.headers as Record<string, string>;
  }
  const { host: _host, ...sendable } = headers;
  const res = await fetch(`${lambda.origin}${path}`, { method: 'POST', headers: sendable, body: payload });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

describe('local Lambda Invoke', () => {
  it('hands the JSON payload to the handler and answers 200 with its JSON result', async () => {
    const before = lambda.invocations('vend');
    const res = await invoke('vend', JSON.stringify({ audience: 'https://orders.example.com', proof: 'tvp1.x' }));

    expect(res.status).toBe(200);
    expect(res.headers.get('x-amz-function-error')).toBeNull();
    expect(res.headers.get('x-amz-executed-version')).toBe('$LATEST');
    expect(res.body).toEqual({ token_type: 'Bearer', echo: { audience: 'https://orders.example.com', proof: 'tvp1.x' } });
    expect(seen.at(-1)).toEqual({ event: { audience: 'https://orders.example.com', proof: 'tvp1.x' }, functionName: 'vend' });
    expect(lambda.invocations('vend')).toBe(before + 1);
  });

  it('accepts the function ARN as FunctionName (percent-encoded, as the SDKs send it)', async () => {
    const res = await invoke(lambda.functionArn('vend'), '{}');

    expect(res.status).toBe(200);
    expect(res.body).toEqual({ token_type: 'Bearer', echo: {} });
  });

  it('a handler that throws: 200 with X-Amz-Function-Error: Unhandled and the runtime error payload', async () => {
    const res = await invoke('boom', '{}');

    expect(res.status).toBe(200);
    expect(res.headers.get('x-amz-function-error')).toBe('Unhandled');
    expect(res.body).toMatchObject({ errorType: 'TypeError', errorMessage: 'handler broke' });
  });

  it('an unknown function -> 404 ResourceNotFoundException; a payload that is not JSON -> 400', async () => {
    const unknown = await invoke('nope', '{}');
    const otherAccount = await invoke('arn:aws:lambda:eu-west-1:999999999999:function:vend', '{}');
    const notJson = await invoke('vend', '{"audience":');

    expect([unknown.status, unknown.headers.get('x-amzn-errortype')]).toEqual([404, 'ResourceNotFoundException']);
    expect(unknown.body.Message).toBe('Function not found: arn:aws:lambda:eu-west-1:123456789012:function:nope');
    expect([otherAccount.status, otherAccount.headers.get('x-amzn-errortype')]).toEqual([404, 'ResourceNotFoundException']);
    expect([notJson.status, notJson.headers.get('x-amzn-errortype')]).toEqual([400, 'InvalidRequestContentException']);
  });

  it('refuses unsigned, wrongly signed, unknown-key and wrong-service requests without running anything', async () => {
    const before = lambda.invocations();

    const unsigned = await invoke('vend', '{}', { signed: false });
    const wrongSecret = await invoke('vend', '{}', { credential: { accessKeyId: CALLER.accessKeyId, secretAccessKey: 'wrong' } });
    const unknownKey = await invoke('vend', '{}', { credential: { accessKeyId: 'AKIAUNKNOWN000000001', secretAccessKey: 'x' } });
    const apiScope = await invoke('vend', '{}', { service: 'execute-api' });

    expect([unsigned, wrongSecret, unknownKey, apiScope].map((r) => [r.status, r.headers.get('x-amzn-errortype')])).toEqual([
      [403, 'MissingAuthenticationTokenException'],
      [403, 'InvalidSignatureException'],
      [403, 'UnrecognizedClientException'],
      [403, 'InvalidSignatureException'],
    ]);
    expect(lambda.invocations()).toBe(before);
  });
});
