/**
 * What the client tests share: a recording fetch, token answers, a clock moved by hand, and a
 * reader for the proofs the client sends.
 */
import { expect } from 'vitest';
import { PROOF_PREFIX, TokenVendorError } from '../../client/index.js';

export const REGION = 'eu-west-1';
export const SERVER_ID = 'token-vendor-test';
export const CREDENTIALS = { accessKeyId: 'AKIAORDERSAPI0000001', secretAccessKey: 'orders-api-secret-key' };
export const ORDERS = 'https://orders.example.com';

export interface FetchCall {
  url: string;
  init: RequestInit;
}

/** A fetch that records calls and answers from a queue of responders (the last one repeats). */
export function fakeFetch(...responders: Array<(call: FetchCall) => Promise<Response> | Response>) {
  const calls: FetchCall[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const call = { url: String(input), init: init ?? {} };
    calls.push(call);
    const responder = responders[Math.min(calls.length - 1, responders.length - 1)];
    if (responder === undefined) throw new Error('no responder');
    return responder(call);
  }) as typeof fetch;
  return { fetch: fetchImpl, calls };
}

export function tokenBody(accessToken: string, expiresIn = 3600, scope?: string) {
  return { access_token: accessToken, token_type: 'Bearer', expires_in: expiresIn, ...(scope === undefined ? {} : { scope }) };
}

export function tokenResponse(accessToken: string, expiresIn = 3600, scope?: string): Response {
  return Response.json(tokenBody(accessToken, expiresIn, scope), { headers: { 'cache-control': 'no-store' } });
}

/** A clock the test moves by hand. */
export function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

export function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export async function caught(promise: Promise<unknown>): Promise<TokenVendorError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TokenVendorError);
  return error as TokenVendorError;
}

export function headersOf(call: FetchCall): Record<string, string> {
  return call.init.headers as Record<string, string>;
}

/** The presigned URL inside a `tvp1.` proof. */
export function proofUrl(proof: string | undefined): URL {
  expect(proof).toMatch(/^tvp1\.[A-Za-z0-9_-]+$/);
  return new URL(Buffer.from(String(proof).slice(PROOF_PREFIX.length), 'base64url').toString('utf8'));
}
