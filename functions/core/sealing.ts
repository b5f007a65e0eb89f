/**
 * Tokens sealed at rest: the core's view of the encryption that keeps a token in the shared table
 * unusable to anyone who can only read the table, and unforgeable to anyone who can only write
 * it. Kept apart from `ports.ts` so the sealing adapter and the store can evolve without touching
 * the other ports.
 */

/**
 * Seals and opens the values of items. A value is sealed for one item (its key): it opens for
 * that item only, so a sealed value copied onto another item does not open there. What the
 * plaintext holds is the caller's: the token store seals the whole record, not only the token.
 */
export interface TokenSealer {
  /** Encrypts `plaintext` for the item `itemKey`; the result is an opaque ASCII string, safe to store and to show in no log. */
  seal(plaintext: string, itemKey: string): Promise<string>;
  /**
   * Decrypts what `seal` returned for the same `itemKey`.
   * @throws SealError when the value is malformed, tampered with, or sealed for another item
   * @throws StoreUnavailableError when KMS could not be asked (an outage, not a verdict on the value)
   */
  open(sealed: string, itemKey: string): Promise<string>;
}

/**
 * Why a sealed value did not open:
 * - `ERR_SEAL_FORMAT`: not a sealed value of a known version (e.g. one written by an older
 *   version of the vendor);
 * - `ERR_SEAL_OPEN`: authentication failed: tampered with, or sealed for another item;
 * - `ERR_SEAL_KEY`: KMS refuses to unwrap its data key: wrapped for another item or table, under
 *   another KMS key, or not a KMS ciphertext at all.
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
