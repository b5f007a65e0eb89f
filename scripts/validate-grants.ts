/**
 * `npm run validate:grants [file]`: validate a grants file exactly as the function will at cold
 * start. Exits 1 with a message naming the bad field.
 */
import { resolve } from 'node:path';
import { loadGrants } from '../functions/config.js';

const file = resolve(process.argv[2] ?? process.env.GRANTS_FILE ?? 'grants.json');
try {
  const book = loadGrants(file);
  console.log(`grants OK: ${file} (${book.clients.size} client(s), ${book.grants.length} grant(s))`);
} catch (error) {
  console.error(`invalid grants: ${(error as Error).message}`);
  process.exit(1);
}
