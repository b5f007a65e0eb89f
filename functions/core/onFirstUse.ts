/**
 * A value loaded the first time it is asked for, once: concurrent callers share the one load, a
 * failed load is not kept (the next call tries again), and what loaded can be read without
 * waiting. What `vend` loads only when its warm path does not suffice (the Auth0 endpoint, jose,
 * the Secrets Manager and KMS clients: composition/lazy.ts, adapters/auth0TokenEndpoint.ts,
 * adapters/kmsTokenSealer.ts) goes through this one mechanism.
 */
export interface OnFirstUse<T> {
  /** the value, loading it if no load succeeded yet */
  get(): Promise<T>;
  /** the value if a load has succeeded, without loading */
  loaded(): T | undefined;
}

export function onFirstUse<T>(load: () => Promise<T>): OnFirstUse<T> {
  let loading: Promise<T> | undefined;
  let value: T | undefined;
  return {
    get: () =>
      (loading ??= load().then(
        (loaded) => (value = loaded),
        (error: unknown) => {
          loading = undefined;
          throw error;
        },
      )),
    loaded: () => value,
  };
}
