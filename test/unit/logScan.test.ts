import { describe, expect, it } from 'vitest';
import { parseRecords, scanForLeaks } from '../../scripts/logScan.js';

describe('log scan', () => {
  const records = parseRecords(
    [
      JSON.stringify({ kind: 'client_secret', value: 'super-secret-value-123' }),
      JSON.stringify({ kind: 'access_token', value: 'eyJhbGciOiJSUzI1NiJ9.payload.signature' }),
      JSON.stringify({ kind: 'client_secret', value: 'short' }),
    ].join('\n'),
  );

  it('finds a secret or a token anywhere in a line, and masks it in the report', () => {
    const log = ['{"level":"INFO","message":"ok"}', '{"level":"DEBUG","body":"client_secret=super-secret-value-123"}', 'Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.signature'].join('\n');
    const leaks = scanForLeaks(log, records);
    expect(leaks.map((l) => [l.kind, l.line])).toEqual([
      ['client_secret', 2],
      ['access_token', 3],
    ]);
    expect(leaks.every((l) => !l.excerpt.includes('super-secret-value-123') && !l.excerpt.includes('payload.signature'))).toBe(true);
  });

  it('passes a clean log and ignores values too short to scan for', () => {
    expect(scanForLeaks('{"fingerprint":"abc"} short', records)).toEqual([]);
  });
});
