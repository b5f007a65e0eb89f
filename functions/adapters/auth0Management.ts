/**
 * Auth0's Management API (`https://{domain}/api/v2/`), the few calls credential rotation makes.
 * A timeout on every call; failures become RotationError with the status and Auth0's message,
 * never a secret (responses that carry one are read, not logged). Bodies are read under a byte
 * cap (boundedBody.ts), as the token endpoint's are, and uncompressed is asked for; unlike the
 * token endpoint, a compressed answer is read all the same (the cap then counts inflated bytes):
 * rotate-secret's answer holds a secret that exists nowhere else, and refusing it would leave the
 * client with a secret no one knows.
 */
import { RotationError, type Auth0Credential, type ManagementApi } from '../core/rotation.js';
import { BodyRefusedError, IDENTITY_ENCODING, readBoundedText } from './boundedBody.js';

/**
 * A client object (rotate-secret answers the whole client) or a list of credentials: tens of KB at
 * most, even with long callback lists and metadata.
 */
export const MAX_MANAGEMENT_RESPONSE_BYTES = 512 * 1024;

export interface Auth0ManagementOptions {
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
}

export class Auth0Management implements ManagementApi {
  private readonly fetch: typeof fetch;

  constructor(private readonly options: Auth0ManagementOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  async rotateSecret(origin: string, accessToken: string, clientId: string): Promise<string> {
    const client = (await this.call(origin, accessToken, 'POST', `/api/v2/clients/${encodeURIComponent(clientId)}/rotate-secret`)) as { client_secret?: unknown };
    if (typeof client.client_secret !== 'string' || client.client_secret === '') throw new RotationError('rotate-secret answered without a client_secret');
    return client.client_secret;
  }

  async listCredentials(origin: string, accessToken: string, clientId: string): Promise<Auth0Credential[]> {
    const list = (await this.call(origin, accessToken, 'GET', `/api/v2/clients/${encodeURIComponent(clientId)}/credentials`)) as Array<{ id: string; name: string; kid?: string }>;
    return list.map(({ id, name, kid }) => ({ id, name, kid }));
  }

  async createCredential(origin: string, accessToken: string, clientId: string, credential: { name: string; pem: string }): Promise<Auth0Credential> {
    const created = (await this.call(origin, accessToken, 'POST', `/api/v2/clients/${encodeURIComponent(clientId)}/credentials`, {
      credential_type: 'public_key',
      name: credential.name,
      pem: credential.pem,
      alg: 'RS256',
    })) as { id: string; name: string; kid?: string };
    return { id: created.id, name: created.name, kid: created.kid };
  }

  async attachCredentials(origin: string, accessToken: string, clientId: string, ids: readonly string[]): Promise<void> {
    await this.call(origin, accessToken, 'PATCH', `/api/v2/clients/${encodeURIComponent(clientId)}`, {
      client_authentication_methods: { private_key_jwt: { credentials: ids.map((id) => ({ id })) } },
    });
  }

  async deleteCredential(origin: string, accessToken: string, clientId: string, credentialId: string): Promise<void> {
    await this.call(origin, accessToken, 'DELETE', `/api/v2/clients/${encodeURIComponent(clientId)}/credentials/${encodeURIComponent(credentialId)}`);
  }

  private async call(origin: string, accessToken: string, method: string, path: string, body?: unknown): Promise<unknown> {
    let response: Response;
    try {
      response = await this.fetch(`${origin}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${accessToken}`,
          accept: 'application/json',
          'accept-encoding': IDENTITY_ENCODING,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        redirect: 'error',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (error) {
      throw new RotationError(`Management API ${method} ${path} failed: ${(error as Error).message}`, { cause: error });
    }
    let text: string;
    try {
      text = await readBoundedText(response, MAX_MANAGEMENT_RESPONSE_BYTES, { acceptEncoded: true });
    } catch (error) {
      if (!(error instanceof BodyRefusedError)) {
        throw new RotationError(`Management API ${method} ${path} failed while reading its answer: ${(error as Error).message}`, { cause: error });
      }
      // The status is worth reporting even when the body is not.
      throw new RotationError(`Management API ${method} ${path} answered ${response.status} with a body that was not read: ${error.message}`, { cause: error });
    }
    if (!response.ok) {
      let message = '';
      try {
        const doc = JSON.parse(text) as { message?: unknown; error?: unknown };
        message = typeof doc.message === 'string' ? doc.message.slice(0, 200) : typeof doc.error === 'string' ? doc.error : '';
      } catch {
        // not JSON: the status says enough
      }
      throw new RotationError(`Management API ${method} ${path} answered ${response.status}${message ? `: ${message}` : ''}`);
    }
    if (text === '') return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // JSON.parse's message quotes the text — here, possibly a new client secret. Say nothing of it.
      throw new RotationError(`Management API ${method} ${path} answered ${response.status} with a body that is not JSON`);
    }
  }
}
