/**
 * One SigV4-signed JSON POST with a timeout, for both transports: `execute-api` (the vendor's
 * REST API, `AWS_IAM`) and `lambda` (the Invoke API). Failures before an answer arrives become
 * the client's own codes; what the answer means is the transport's to say.
 */
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { ClientErrorCode, TokenVendorError } from './errors.js';
import type { TokenVendorCredentials } from './types.js';

export interface SignedPosterOptions {
  /** the SigV4 service name: `execute-api` or `lambda` */
  service: string;
  region: string;
  credentials: TokenVendorCredentials;
  fetch: typeof fetch;
  timeoutMs: number;
  /** who we are talking to, for messages: "the token vendor", "Lambda" */
  peer: string;
}

export interface SignedAnswer {
  response: Response;
  text: string;
}

export class SignedPoster {
  readonly #signer: SignatureV4;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  readonly #peer: string;

  constructor(opts: SignedPosterOptions) {
    this.#fetch = opts.fetch;
    this.#timeoutMs = opts.timeoutMs;
    this.#peer = opts.peer;
    this.#signer = new SignatureV4({
      service: opts.service,
      region: opts.region,
      credentials: opts.credentials,
      sha256: Hash.bind(null, 'sha256'),
      // x-amz-content-sha256 is an S3 convention; API Gateway and Lambda hash the body they receive.
      applyChecksum: false,
    });
  }

  /**
   * Sign and send. Every header in `headers` is signed (smithy signs all it is given), so the
   * proof header cannot be swapped on a request in transit without breaking the signature.
   * @throws TokenVendorError `credentials_unavailable`, `network_error` or `timeout`
   */
  async post(url: URL, body: string, headers: Record<string, string>): Promise<SignedAnswer> {
    const unsigned = new HttpRequest({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      // Already percent-encoded, exactly as fetch will send it; the signer encodes it once more,
      // which is the double encoding every service but S3 checks.
      path: url.pathname,
      headers: { host: url.host, ...headers },
      body,
    });

    let signed: HttpRequest;
    try {
      // Signed on the real clock, not an injected one: the server judges X-Amz-Date by its own.
      signed = (await this.#signer.sign(unsigned)) as HttpRequest;
    } catch (error) {
      throw credentialsUnavailable(error);
    }
    const sent: Record<string, string> = {};
    for (const [name, value] of Object.entries(signed.headers)) {
      // fetch derives Host from the URL (the same value we signed) and refuses to be told it.
      if (name.toLowerCase() !== 'host') sent[name] = value;
    }

    try {
      const response = await this.#fetch(url, {
        method: 'POST',
        headers: sent,
        body,
        // A redirect would resend the signed request somewhere else; neither API sends one.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      return { response, text: await response.text() };
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
      throw new TokenVendorError(timedOut ? `${capitalized(this.#peer)} did not answer within ${this.#timeoutMs} ms.` : `Could not reach ${this.#peer}.`, {
        status: 0,
        code: timedOut ? ClientErrorCode.timeout : ClientErrorCode.networkError,
        cause: error,
      });
    }
  }
}

/** The credential chain failed, or signing with what it gave did. */
export function credentialsUnavailable(cause: unknown): TokenVendorError {
  return new TokenVendorError('Could not sign the token request: no usable AWS credentials.', {
    status: 0,
    code: ClientErrorCode.credentialsUnavailable,
    cause,
  });
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
