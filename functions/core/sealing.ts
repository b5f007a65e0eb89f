/**
 * Tokens sealed at rest: the core's view of the encryption that keeps a token in the shared table
 * unusable to anyone who can only read the table. Kept apart from `ports.ts` so the sealing
 * adapter and the store can evolve without touching the other ports.
 */

/**
 * Seals and opens token values. The associated data binds a ciphertext to its item (its key):
 * a sealed value copied onto another item does not open there.
 */
export interface TokenSealer {
  /** Encrypts `plaintext`; the result is an opaque ASCII string, safe to store and to show in no log. */
  seal(plaintext: string, associatedData: string): Promise<string>;
  /**
   * Decrypts what `seal` returned for the same `associatedData`.
   * @throws SealError when the value is malformed, tampered with, sealed for other associated data
   *   or under a data key that is no longer known.
   */
  open(sealed: string, associatedData: string): Promise<string>;
}

/**
 * Why a sealed value did not open:
 * - `ERR_SEAL_FORMAT`: not a sealed value of a known version (e.g. a plaintext token written
 *   before sealing was introduced);
 * - `ERR_SEAL_OPEN`: authentication failed: tampered with, or sealed for other associated data;
 * - `ERR_SEAL_KEY`: the data key it names is unknown (expired from the table) or its stored
 *   copy is not usable.
 */
export type SealErrorCode = 'ERR_SEAL_FORMAT' | 'ERR_SEAL_OPEN' | 'ERR_SEAL_KEY';

/**
 * A sealed value that cannot be trusted. Deterministic, unlike an outage: retrying does not help,
 * so a store treats it as a miss and fetches a fresh token. The message never holds the value.
 */
export class SealError extends Error {
  override readonly name = 'SealError';

  constructor(
    readonly code: SealErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
