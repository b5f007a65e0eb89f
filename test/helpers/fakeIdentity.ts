/**
 * An {@link IdentityVerifier} for unit tests of the handler layer, where no STS runs: a proof
 * `fake-proof:<caller ARN>` proves that caller; anything else is refused as a real verifier would
 * refuse it. Integration tests use the real verifier against the local STS stand-in instead.
 */
import { IdentityProofError } from '../../functions/core/errors.js';
import type { IdentityVerifier } from '../../functions/core/ports.js';
import { callerFromArn } from '../../functions/core/principal.js';

export const FAKE_PROOF_PREFIX = 'fake-proof:';

export function fakeProof(callerArn: string): string {
  return `${FAKE_PROOF_PREFIX}${callerArn}`;
}

export function fakeIdentity(): IdentityVerifier & { readonly calls: Array<{ audience: string; scope: string | undefined }> } {
  const calls: Array<{ audience: string; scope: string | undefined }> = [];
  return {
    calls,
    async verify(proof, request) {
      calls.push({ ...request });
      const caller = typeof proof === 'string' && proof.startsWith(FAKE_PROOF_PREFIX) ? callerFromArn(proof.slice(FAKE_PROOF_PREFIX.length)) : undefined;
      if (caller === undefined) throw new IdentityProofError('No identity proof.');
      return { ...caller, uniqueId: 'AROAFAKEUNIQUEID0001' };
    },
  };
}
