/**
 * What the callers' side of issue 12 (a request naming an Auth0 organization) is checked against,
 * apart from the vendor's own handling of it: the local gateway (SigV4 `AWS_IAM` as API Gateway
 * checks it) in front of a handler that records each body and proof and answers a token, and
 * {@link proofBinds}, which says whether a proof verifies for a request the way the vendor checks
 * one. Proofs and tokens are compared, never printed.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { checkProof, requestBinding as vendorRequestBinding } from '../../functions/core/identityProof.js';
import { startLocalGateway, type LocalCredential } from '../../local/gateway.js';
import { verifyPresignedSigV4 } from '../../local/sigv4.js';
import { REGION, SERVER_ID } from './fakes.js';

export interface RecordedRequest {
  readonly body: Record<string, unknown>;
  readonly proof: string | undefined;
}

export interface RecordingVendor {
  /** the endpoint a caller uses: `http://127.0.0.1:PORT/local` */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** the access token every answer carries */
  readonly accessToken: string;
  close(): Promise<void>;
}

/** A gateway that accepts `callers`' keys and answers every `POST /token` with one token. */
export async function startRecordingVendor(callers: LocalCredential[]): Promise<RecordingVendor> {
  const requests: RecordedRequest[] = [];
  const accessToken = 'tok-recorded-organization';
  const gateway = await startLocalGateway({
    region: REGION,
    stage: 'local',
    credentials: callers,
    handler: async (event: APIGatewayProxyEvent) => {
      const proofHeader = Object.entries(event.headers ?? {}).find(([name]) => name.toLowerCase() === 'x-token-vendor-proof');
      requests.push({ body: JSON.parse(event.body ?? '{}') as Record<string, unknown>, proof: proofHeader?.[1] ?? undefined });
      return {
        statusCode: 200,
        headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
        body: JSON.stringify({ access_token: accessToken, token_type: 'Bearer', expires_in: 3600 }),
      };
    },
  });
  return { url: gateway.url, requests, accessToken, close: () => gateway.close() };
}

export interface Binding {
  audience: string;
  scope?: string | undefined;
  organization?: string | undefined;
}

/**
 * Does `proof` verify for `binding`, signed by `signer`, as the vendor would use it: the vendor's
 * own pre-STS checks (functions/core/identityProof.ts `checkProof`) rebuild the request, the
 * binding header is the vendor's `requestBinding` for the audience, scope and organization, and
 * the signature is checked as the local STS stand-in checks it (local/sigv4.ts).
 */
export function proofBinds(proof: string | undefined, binding: Binding, signer: LocalCredential, serverId = SERVER_ID): boolean {
  if (proof === undefined) return false;
  const checked = checkProof(proof, { audience: binding.audience, scope: binding.scope }, { region: REGION, serverId }, Date.now());
  const url = new URL(checked.url);
  const headers = { host: url.host, ...checked.headers, 'x-token-vendor-request': vendorRequestBinding(binding.audience, binding.scope, binding.organization) };
  const sessionToken = url.searchParams.get('X-Amz-Security-Token');
  const result = verifyPresignedSigV4(
    { method: 'GET', url: `${url.pathname}${url.search}`, headers, body: new Uint8Array() },
    {
      region: REGION,
      service: 'sts',
      lookup: (id) => (id === signer.accessKeyId ? { ...signer, ...(sessionToken === null ? {} : { sessionToken }) } : undefined),
    },
  );
  return result.ok;
}
