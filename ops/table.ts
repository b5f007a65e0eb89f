/**
 * The ops CLI's tables: a header row naming every column, then the rows, each column as wide as
 * its widest cell, two spaces apart. Plain text (no box drawing), so `grep` and `cut` work on it.
 */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, indent = ''): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `${indent}${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd();
  return [line(headers), ...rows.map(line)];
}
