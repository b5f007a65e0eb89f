/**
 * The Auth0 organization a caller may name (issue 12): an `org_…` id or an organization's name,
 * sent to the vendor exactly as given and bound into the proof as `\n<organization>`
 * (docs/identity-proof.md, `x-token-vendor-request`). No module here touches AWS, so the command
 * line (client/cliArgs.ts) checks a flag with the same rule as `getToken` without loading a signer.
 */

/** Longer than any Auth0 organization id or name; the bound keeps a stray value out of the body. */
export const MAX_ORGANIZATION_LENGTH = 100;
/**
 * Control characters (Unicode Cc: C0, DEL, C1). The binding text is `tvp1\n<audience>\n<scope>\n<organization>`:
 * a newline in an organization would make it ambiguous, and the vendor refuses C0 and DEL
 * (functions/http/vendRequest.ts `CONTROL`); no Auth0 organization id or name holds any of them.
 */
const CONTROL = /\p{Cc}/u;

/** Why `value` cannot name an organization, or `undefined` when it can. */
export function organizationProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.trim() === '') return 'organization must be a non-empty string';
  if (value.length > MAX_ORGANIZATION_LENGTH) return `organization must be at most ${MAX_ORGANIZATION_LENGTH} characters`;
  if (CONTROL.test(value)) return 'organization must not contain control characters';
  return undefined;
}
