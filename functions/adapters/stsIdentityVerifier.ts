/**
 * The {@link IdentityVerifier} over AWS STS: the proof is checked and rebuilt by
 * core/identityProof.ts, then sent to STS as the caller signed it, with the binding headers the
 * vendor computes itself, and the principal is taken from STS's answer alone (CVE-2022-2385).
 * No AWS credentials of the vendor are used: STS authenticates the caller's own signature.
 *
 * One attempt, with a timeout, no redirect followed (a redirect would resend the caller's
 * signature elsewhere; aws-iam-authenticator refuses them too), the answer read up to 16 KiB.
 *
 * The same proof for the same request is proved once per instance while it is valid: concurrent
 * copies share one STS call, and a copy that arrives later reuses the answer. That is exactly what
 * a replay inside the window could get anyway (the proof is bound to this request and deployment),
 * and STS's GetCallerIdentity ignores IAM policies, so a revoked session would not have been refused
 * by STS either. Failures are never kept: the next copy asks STS again.
 */
import { createHash } from 'node:crypto';
import { readBoundedBody } from './boundedBody.js';
import { IdentityProofError, ProofRefusedError, StsBadAnswerError, StsUnavailableError } from '../core/errors.js';
import { checkProof, REQUEST_HEADER, type CheckedProof, type ProofPolicy } from '../core/identityProof.js';
import type { IdentityVerifier } from '../core/ports.js';
import { callerFromArn, type IamCaller } from '../core/principal.js';

export interface StsIdentityVerifierOptions {
  readonly policy: ProofPolicy;
  /** per STS call, covering the body (STS_TIMEOUT_MS) */
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
}

const MAX_ANSWER_BYTES = 16 * 1024;
/** What a caller waits before retrying after STS failed us: STS recovers fast or not at all. */
const RETRY_AFTER_SECONDS = 1;
const UNIQUE_ID = /^A[A-Z0-9]{15,127}$/;
/** Proofs remembered per instance: past this, the oldest is forgotten (a Map keeps insertion order). */
const MAX_REMEMBERED = 1000;

export class StsIdentityVerifier implements IdentityVerifier {
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #proved = new Map<string, { readonly caller: Promise<IamCaller>; readonly expiresAt: number }>();

  constructor(private readonly options: StsIdentityVerifierOptions) {
    this.#fetch = options.fetch ?? globalThis.fetch;
    // Read at each call, so a clock installed later (a test's fake Date) is the one used.
    this.#now = options.now ?? (() => Date.now());
  }

  async verify(proof: unknown, request: { readonly audience: string; readonly scope: string | undefined; readonly organization?: string | undefined }): Promise<IamCaller> {
    const now = this.#now();
    // Checked on every copy: the window closes for a remembered proof as for a new one.
    const checked = checkProof(proof, request, this.options.policy, now);
    const key = createHash('sha256').update(checked.url).update('\n').update(checked.headers[REQUEST_HEADER] ?? '').digest('base64url');
    const known = this.#proved.get(key);
    if (known !== undefined && now <= known.expiresAt) return known.caller;
    const caller = this.#ask(checked);
    this.#remember(key, caller, checked.expiresAt, now);
    return caller;
  }

  #remember(key: string, caller: Promise<IamCaller>, expiresAt: number, now: number): void {
    for (const [k, v] of this.#proved) {
      if (v.expiresAt < now || this.#proved.size >= MAX_REMEMBERED) this.#proved.delete(k);
      else break;
    }
    this.#proved.set(key, { caller, expiresAt });
    caller.catch(() => {
      if (this.#proved.get(key)?.caller === caller) this.#proved.delete(key);
    });
  }

  async #ask(checked: CheckedProof): Promise<IamCaller> {
    let status: number;
    let text: string;
    try {
      const response = await this.#fetch(checked.url, {
        method: 'GET',
        headers: { ...checked.headers, 'accept-encoding': 'identity' },
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      status = response.status;
      text = new TextDecoder().decode(await readBoundedBody(response, MAX_ANSWER_BYTES, { acceptEncoded: true }));
    } catch (error) {
      throw new StsUnavailableError(`STS GetCallerIdentity failed: ${error instanceof Error ? error.name : 'error'}`, RETRY_AFTER_SECONDS, { cause: error });
    }
    if (status === 200) return identityFrom(text);
    const code = errorCode(text);
    // Throttling is a 400 from STS, and says nothing about the proof: come back later.
    if (status >= 500 || status === 429 || code === 'Throttling' || (status >= 300 && status < 400)) {
      throw new StsUnavailableError(`STS answered ${status} ${code ?? ''}`.trim(), RETRY_AFTER_SECONDS);
    }
    throw new ProofRefusedError(`AWS STS refused the identity proof (${status}${code === undefined ? '' : ` ${code}`}): sign a new proof with valid credentials, for this request and this deployment.`);
  }
}

/** The principal in a 200 answer; anything else is STS misbehaving (503), not the caller (403). */
function identityFrom(text: string): IamCaller {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new StsBadAnswerError('STS answered 200 with a body that is not JSON', RETRY_AFTER_SECONDS);
  }
  const result = field(field(doc, 'GetCallerIdentityResponse'), 'GetCallerIdentityResult');
  const arn = field(result, 'Arn');
  const account = field(result, 'Account');
  const userId = field(result, 'UserId');
  if (typeof arn !== 'string' || typeof account !== 'string' || typeof userId !== 'string') {
    throw new StsBadAnswerError('STS answered 200 without Arn, Account and UserId', RETRY_AFTER_SECONDS);
  }
  const caller = callerFromArn(arn);
  if (caller === undefined) {
    // Root, federated users and other non-role, non-user principals are never granted anything.
    throw new IdentityProofError('The proven principal is neither an IAM role session nor an IAM user: use a role or a user.');
  }
  // A role session's UserId is `AROA…:session`; a user's is `AIDA…`.
  const [uniqueId = '', session, ...rest] = userId.split(':');
  const shapeOk = rest.length === 0 && UNIQUE_ID.test(uniqueId) && (caller.type === 'role' ? session !== undefined : session === undefined);
  if (caller.account !== account || !shapeOk) {
    throw new StsBadAnswerError('STS answered 200 with an identity whose parts disagree', RETRY_AFTER_SECONDS);
  }
  return { ...caller, uniqueId };
}

function field(doc: unknown, name: string): unknown {
  return typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>)[name] : undefined;
}

/** STS's error code, from a JSON (`Error.Code`) or XML (`<Code>`) body, bounded: for the log only. */
function errorCode(text: string): string | undefined {
  let code: unknown;
  try {
    code = field(field(JSON.parse(text), 'Error'), 'Code');
  } catch {
    code = /<Code>([^<]{1,64})<\/Code>/.exec(text)?.[1];
  }
  return typeof code === 'string' && /^[A-Za-z.]{1,64}$/.test(code) ? code : undefined;
}
