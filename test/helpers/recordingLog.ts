/** A Log (functions/core/ports.ts) that keeps every line, for tests that assert on what was logged. */
import type { Log, LogFields } from '../../functions/core/ports.js';

export class RecordingLog implements Log {
  readonly lines: { level: string; message: string; fields: LogFields[] }[] = [];
  debug(message: string, ...fields: LogFields[]) {
    this.lines.push({ level: 'debug', message, fields });
  }
  info(message: string, ...fields: LogFields[]) {
    this.lines.push({ level: 'info', message, fields });
  }
  warn(message: string, ...fields: LogFields[]) {
    this.lines.push({ level: 'warn', message, fields });
  }
  error(message: string, ...fields: LogFields[]) {
    this.lines.push({ level: 'error', message, fields });
  }
}
