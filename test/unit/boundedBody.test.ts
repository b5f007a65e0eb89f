/**
 * boundedBody.ts on in-memory Responses: what is refused on the headers alone (and cancelled
 * unread), where the cap falls, that a stream is cancelled as soon as it passes the cap, and the
 * fetch wrapper handed to jose. The memory a hostile body really costs is measured against a real
 * server in test/integration/hostileBody.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { BodyRefusedError, boundedFetch, readBoundedBody, readBoundedText } from '../../functions/adapters/boundedBody.js';

/** A body that yields `chunks`, then as many more as it is asked for; records pulls and cancellation. */
function streamed(chunks: readonly Uint8Array[], endless = false) {
  const state = { pulled: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks[state.pulled] ?? (endless ? new Uint8Array(1024) : undefined);
      state.pulled += 1;
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
    cancel() {
      state.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { body, state };
}

const bytes = (n: number, fill = 0x61) => new Uint8Array(n).fill(fill);

describe('readBoundedBody', () => {
  it('reads a body up to exactly the cap, across chunks', async () => {
    const { body } = streamed([bytes(3), bytes(4), bytes(3)]);
    expect((await readBoundedBody(new Response(body), 10)).byteLength).toBe(10);
    expect(await readBoundedText(new Response('{"a":"é"}'), 64)).toBe('{"a":"é"}');
    expect((await readBoundedBody(new Response(null), 10)).byteLength).toBe(0);
  });

  it('one byte past the cap: refused, and the stream cancelled at once, not drained', async () => {
    const { body, state } = streamed([bytes(6), bytes(5)], true);
    const error = await readBoundedBody(new Response(body), 10).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BodyRefusedError);
    expect(error).toMatchObject({ reason: 'too_large', message: 'response body exceeds 10 bytes' });
    expect(state.cancelled).toBe(true);
    expect(state.pulled).toBe(2);
  });

  it.each(['gzip', 'deflate', 'br', 'x-gzip', 'GZIP', 'identity, gzip', 'gzip, identity', 'zstd', 'compress', 'weird'])(
    'Content-Encoding %j: refused on the header, nothing read, the body cancelled',
    async (encoding) => {
      const { body, state } = streamed([bytes(5)]);
      const error = await readBoundedBody(new Response(body, { headers: { 'content-encoding': encoding } }), 1024).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BodyRefusedError);
      expect(error).toMatchObject({ reason: 'encoding' });
      expect(state).toEqual({ pulled: 0, cancelled: true });
    },
  );

  it.each(['identity', 'IDENTITY', ' identity ', ''])('Content-Encoding %j is no encoding: read', async (encoding) => {
    const response = new Response('ok', { headers: { 'content-encoding': encoding } });
    expect(await readBoundedText(response, 10)).toBe('ok');
  });

  it('acceptEncoded: any encoding is read, the cap counting the bytes the body yields', async () => {
    const { body } = streamed([bytes(4)]);
    expect((await readBoundedBody(new Response(body, { headers: { 'content-encoding': 'gzip' } }), 10, { acceptEncoded: true })).byteLength).toBe(4);
    const endless = streamed([], true);
    const error = await readBoundedBody(new Response(endless.body, { headers: { 'content-encoding': 'gzip' } }), 4096, { acceptEncoded: true }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'too_large' });
    expect(endless.state).toEqual({ pulled: 5, cancelled: true });
  });

  it('a Content-Length over the cap: refused on the header, nothing read; one at the cap is read', async () => {
    const over = streamed([bytes(5)]);
    const error = await readBoundedBody(new Response(over.body, { headers: { 'content-length': '11' } }), 10).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'too_large', message: 'response declares 11 bytes, more than 10' });
    expect(over.state).toEqual({ pulled: 0, cancelled: true });

    const at = streamed([bytes(10)]);
    expect((await readBoundedBody(new Response(at.body, { headers: { 'content-length': '10' } }), 10)).byteLength).toBe(10);
  });

  it('a Content-Length that lies low does not lift the cap', async () => {
    const { body, state } = streamed([bytes(8), bytes(8)], true);
    const error = await readBoundedBody(new Response(body, { headers: { 'content-length': '2' } }), 10).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'too_large' });
    expect(state.cancelled).toBe(true);
  });

  it('an error while reading is not a refusal: it propagates as it is', async () => {
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(new TypeError('terminated'));
      },
    });
    await expect(readBoundedBody(new Response(body), 10)).rejects.toThrow(TypeError);
  });
});

describe('boundedFetch (the fetch handed to jose)', () => {
  it('asks for identity, keeps the caller’s headers, and answers a Response built from the bounded bytes', async () => {
    let seen: Headers | undefined;
    const fetchImpl: typeof fetch = async (_input, init) => {
      seen = new Headers(init?.headers);
      return new Response('{"keys":[]}', { status: 200, statusText: 'OK', headers: { 'content-type': 'application/json' } });
    };
    const response = await boundedFetch(fetchImpl, 64)('https://tenant.example/.well-known/jwks.json', {
      headers: new Headers({ accept: 'application/json', 'user-agent': 'jose' }),
      redirect: 'manual',
    });
    expect(seen?.get('accept-encoding')).toBe('identity');
    expect(seen?.get('user-agent')).toBe('jose');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toEqual({ keys: [] });
  });

  it('rejects with BodyRefusedError for a compressed or oversized body, so jose never reads it', async () => {
    const gzip: typeof fetch = async () => new Response('\x1f\x8b', { headers: { 'content-encoding': 'gzip' } });
    await expect(boundedFetch(gzip, 64)('https://tenant.example/jwks')).rejects.toBeInstanceOf(BodyRefusedError);
    const large: typeof fetch = async () => new Response('x'.repeat(65));
    await expect(boundedFetch(large, 64)('https://tenant.example/jwks')).rejects.toMatchObject({ reason: 'too_large' });
  });

  it('passes a non-200 through (jose reports it) and a null-body status without a body', async () => {
    const status = (code: number): typeof fetch => async () => new Response(code === 204 ? null : 'nope', { status: code });
    expect((await boundedFetch(status(503), 64)('https://tenant.example/jwks')).status).toBe(503);
    const empty = await boundedFetch(status(204), 64)('https://tenant.example/jwks');
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
  });
});
