/**
 * `POST {endpoint}/token` on the vendor's REST API: SigV4-signed for API Gateway's `AWS_IAM`
 * (the outer gate), with the proof in `X-Token-Vendor-Proof` (docs/identity-proof.md, "Where the
 * proof travels").
 */
import { parseRetryAfter, parseJson, parseTokenResponse, vendorRefusal } from './answers.js';
import { PROOF_HEADER } from './identityProof.js';
import { SignedPoster } from './signedPost.js';
import type { Transport, TransportOptions } from './transport.js';

/** @throws TypeError for an endpoint that is not an http(s) URL without query or fragment */
export function apiGatewayTransport(endpoint: string, opts: TransportOptions): Transport {
  const base = new URL(endpoint);
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new TypeError('endpoint must be an http(s) URL');
  if (base.search !== '' || base.hash !== '') throw new TypeError('endpoint must not have a query or fragment');
  const tokenUrl = new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}/token`);
  const poster = new SignedPoster({ ...opts, service: 'execute-api', peer: 'the token vendor' });

  return async ({ audience, scope, organization, proof }) => {
    // Fields left out rather than sent empty: a body without `organization` is exactly the one
    // sent before organizations existed.
    const body = JSON.stringify({ audience, ...(scope === '' ? {} : { scope }), ...(organization === undefined ? {} : { organization }) });
    const { response, text } = await poster.post(tokenUrl, body, { 'content-type': 'application/json', [PROOF_HEADER.toLowerCase()]: proof });
    const receivedAt = opts.now();
    if (response.status < 200 || response.status > 299) {
      throw vendorRefusal(response.status, parseJson(text), parseRetryAfter(response.headers.get('retry-after'), receivedAt));
    }
    return parseTokenResponse(response.status, text, scope, receivedAt);
  };
}
