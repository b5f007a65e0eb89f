import { describe, expect, it } from 'vitest';
import { onFirstUse } from '../../../functions/core/onFirstUse.js';

describe('onFirstUse', () => {
  it('loads once for every concurrent and later caller, and reads without loading', async () => {
    // Arrange
    let loads = 0;
    const value = onFirstUse(async () => ({ n: (loads += 1) }));
    // Act
    const before = value.loaded();
    const all = await Promise.all([value.get(), value.get(), value.get()]);
    const later = await value.get();
    // Assert
    expect(before).toBeUndefined();
    expect(loads).toBe(1);
    expect(new Set([...all, later]).size).toBe(1);
    expect(value.loaded()).toBe(later);
  });

  it('does not keep a failed load: the next call loads again', async () => {
    // Arrange
    let loads = 0;
    const value = onFirstUse(async () => {
      loads += 1;
      if (loads === 1) throw new Error('chunk missing');
      return 'ok';
    });
    // Act
    const failed = await value.get().catch((e: unknown) => (e as Error).message);
    const afterFailure = value.loaded();
    const next = await value.get();
    // Assert
    expect(failed).toBe('chunk missing');
    expect(afterFailure).toBeUndefined();
    expect(next).toBe('ok');
    expect(loads).toBe(2);
  });
});
