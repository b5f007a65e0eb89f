/**
 * The log scan: given the secrets and access tokens that existed during a test run (recorded by
 * the local Auth0 tenant and the test harness) and everything the run printed, find any line that
 * contains one of them. Short values are skipped: a 3-character "secret" would match noise.
 */
export interface SensitiveValue {
  readonly kind: string;
  readonly value: string;
}

export interface Leak {
  readonly kind: string;
  readonly line: number;
  /** the offending line with the value masked, so the report does not leak it again */
  readonly excerpt: string;
}

const MIN_SCANNED_LENGTH = 12;

export function parseRecords(jsonLines: string): SensitiveValue[] {
  const out: SensitiveValue[] = [];
  for (const line of jsonLines.split('\n')) {
    if (line.trim() === '') continue;
    const doc = JSON.parse(line) as { kind?: unknown; value?: unknown };
    if (typeof doc.kind === 'string' && typeof doc.value === 'string') out.push({ kind: doc.kind, value: doc.value });
  }
  return out;
}

export function scanForLeaks(log: string, sensitive: readonly SensitiveValue[]): Leak[] {
  const values = dedupe(sensitive.filter((s) => s.value.length >= MIN_SCANNED_LENGTH));
  const leaks: Leak[] = [];
  log.split('\n').forEach((line, index) => {
    for (const { kind, value } of values) {
      if (line.includes(value)) {
        leaks.push({ kind, line: index + 1, excerpt: line.split(value).join(`<${kind}>`).slice(0, 300) });
      }
    }
  });
  return leaks;
}

function dedupe(values: readonly SensitiveValue[]): SensitiveValue[] {
  const seen = new Map<string, SensitiveValue>();
  for (const v of values) if (!seen.has(v.value)) seen.set(v.value, v);
  return [...seen.values()];
}
