/**
 * Reading an HTTP response body from the IdP without letting the IdP decide how much memory we
 * spend: `Accept-Encoding: identity` is asked for, a compressed body is refused unread, a declared
 * length over the cap is refused unread, and the rest is read as a stream that is cancelled (which
 * closes the connection) as soon as it passes the byte cap.
 *
 * Why checking `Content-Encoding` before touching the body is enough. Node's fetch (undici) decodes
 * gzip, deflate and br transparently, whatever we asked for. Read in Node 20's bundled undici 6.x
 * (`internal/deps/undici/undici`) and in `node_modules/undici` 7.x (`lib/web/fetch/index.js`, both
 * `onHeaders`): when the headers arrive it wraps the raw bytes in `new Readable({ read: resume })`
 * and, if `Content-Encoding` names a coding it knows, `pipeline()`s that into zlib's Gunzip /
 * Inflate / BrotliDecompress. So inflating does start before anyone reads the body, but only as far
 * as back-pressure lets it: zlib stops once its readable side holds a high-water mark
 * (`processCallback` in Node's lib/zlib.js waits for `_read` when `push()` returns false, even
 * mid-chunk; 16 KiB on Node 20, 64 KiB from Node 22), and undici's `onData` pauses the socket when
 * its own `push()` returns false. The `ReadableStream` the Response exposes is a byte stream with a
 * high-water mark of 0, pulled only by a read. A body refused on its headers and cancelled unread
 * therefore costs a few high-water marks, however far it would inflate; cancelling aborts the fetch
 * and destroys the connection. test/integration/hostileBody.test.ts measures it against a server
 * that sends gzip although identity was asked for. Auth0 is expected to honour identity (standard
 * HTTP; docs/auth0-wire-behaviour.md §12); without our header undici would ask for gzip itself.
 *
 * The bytes counted are the ones the Response yields, that is after undici's decoding. So a caller
 * that cannot afford to refuse a compressed body (the Management API's rotate-secret answer carries
 * a secret that exists nowhere else) may pass `acceptEncoded`: the cap then bounds the inflated
 * bytes, and the same back-pressure bounds what undici inflates ahead of our reads.
 */

/** Ask the server not to compress: the value of `Accept-Encoding` on every request to the IdP. */
export const IDENTITY_ENCODING = 'identity';

/** Why a body was not read: an encoding we do not decode, or more bytes than the cap. */
export class BodyRefusedError extends Error {
  constructor(
    readonly reason: 'encoding' | 'too_large',
    message: string,
  ) {
    super(message);
    this.name = 'BodyRefusedError';
  }
}

export interface BoundedBodyOptions {
  /**
   * Read a body with a `Content-Encoding` too, as undici decodes it, counting decoded bytes against
   * the cap. Default false: such a body is refused unread.
   */
  readonly acceptEncoded?: boolean;
}

/**
 * The response's body as bytes, at most `maxBytes` of them. Throws {@link BodyRefusedError} without
 * reading (and cancels the body, which closes the connection) when `Content-Encoding` is anything
 * but absent or `identity` (unless `acceptEncoded`), or `Content-Length` is over the cap; reads
 * chunk by chunk otherwise and cancels as soon as the count passes the cap. Network errors while
 * reading propagate as they are.
 */
export async function readBoundedBody(response: Response, maxBytes: number, options: BoundedBodyOptions = {}): Promise<Uint8Array> {
  const refusal = refusalOf(response.headers, maxBytes, options.acceptEncoded === true);
  if (refusal !== undefined) {
    await discardBody(response);
    throw refusal;
  }
  const body = response.body;
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new BodyRefusedError('too_large', `response body exceeds ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** {@link readBoundedBody}, decoded as UTF-8 (invalid sequences replaced, never thrown on). */
export async function readBoundedText(response: Response, maxBytes: number, options: BoundedBodyOptions = {}): Promise<string> {
  return new TextDecoder().decode(await readBoundedBody(response, maxBytes, options));
}

/**
 * A `fetch` whose responses carry a body already read through {@link readBoundedBody}, for
 * libraries that read the body themselves (jose's `createRemoteJWKSet` calls `response.json()`):
 * it asks for `Accept-Encoding: identity`, and a refused body rejects the fetch with a
 * {@link BodyRefusedError}.
 */
export function boundedFetch(fetchImpl: typeof fetch, maxBytes: number): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('accept-encoding', IDENTITY_ENCODING);
    const response = await fetchImpl(input, { ...init, headers });
    const bytes = await readBoundedBody(response, maxBytes);
    return new Response(NULL_BODY_STATUSES.has(response.status) ? null : bytes, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

/** Statuses a `Response` may not be constructed with a body for (Fetch standard, "null body status"). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** The reason not to read this body at all, judged on its headers alone. */
function refusalOf(headers: Headers, maxBytes: number, acceptEncoded: boolean): BodyRefusedError | undefined {
  const encoding = headers.get('content-encoding');
  if (!acceptEncoded && encoding !== null && !encoding.split(',').every((coding) => /^\s*(identity)?\s*$/i.test(coding))) {
    return new BodyRefusedError('encoding', `response body has Content-Encoding ${JSON.stringify(encoding.slice(0, 64))}; only identity is read`);
  }
  const length = headers.get('content-length');
  if (length !== null && /^\s*\d+\s*$/.test(length) && Number(length) > maxBytes) {
    return new BodyRefusedError('too_large', `response declares ${Number(length)} bytes, more than ${maxBytes}`);
  }
  return undefined;
}

/** Cancel an unread body: undici aborts the fetch and closes the connection. Never throws. */
async function discardBody(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // already errored or locked: nothing more to release
  }
}
