/**
 * A vendor instance in its own OS process, as a separate Lambda instance would be: it loads the
 * configuration from its environment, builds its own clients, reports `READY`, waits for `GO` on
 * stdin, then sends N concurrent API Gateway events through the real handler and prints one
 * `RESULT <json>` line. Everything else it prints (the vendor's logs) passes through to the
 * test run's output, where the log scan reads it.
 */
import { createInterface } from 'node:readline';
import { loadConfig } from '../../functions/config.js';
import { createVendor } from '../../functions/vendor.js';
import { apiEvent } from './events.js';

const concurrency = Number(process.argv[2] ?? '50');
const audience = process.argv[3] ?? '';
const scope = process.argv[4];
const vendor = createVendor(loadConfig(process.env));

process.stdout.write('READY\n');
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() !== 'GO') continue;
  const body = JSON.stringify(scope === undefined ? { audience } : { audience, scope });
  const results = await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const res = (await vendor.handler(apiEvent({ body }))) as { statusCode: number; body: string };
      const doc = JSON.parse(res.body) as { access_token?: string; error?: string };
      // Only a fingerprint-sized prefix of the hash leaves the process, never the token.
      const { fingerprint } = await import('../../functions/core/tokenIdentity.js');
      return { status: res.statusCode, fingerprint: doc.access_token ? fingerprint(doc.access_token) : null, error: doc.error ?? null };
    }),
  );
  process.stdout.write(`RESULT ${JSON.stringify(results)}\n`);
  break;
}
lines.close();
