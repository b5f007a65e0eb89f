/**
 * The settings serverless.yml deploys, for the test suites: they run on these values, at most on a
 * faster clock. A faster clock is fine; other ratios are not (issue 9).
 *
 * - `deployedSettings()`: `provider.environment` of serverless.yml, each `${param:…}` taken from
 *   `params.default`, restricted to what functions/config.ts reads and does not depend on the stage
 *   (not the table, key, service name or grants file). test/deploy/serverless.test.ts checks it
 *   against the packaged template, and every packaged value against config.ts's default.
 * - `scaled(factor)`: the same settings on a clock `1 / factor` times faster. One factor for every
 *   time-valued setting alike: each duration (`…_MS`, `…_SECONDS`) times `factor`, each rate
 *   (`…_PER_HOUR`) divided by it; shares, sizes and names as they are. Every ratio between two
 *   settings stays the deployed one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_VARIABLES } from '../../functions/config.js';

/**
 * The suites' clock: 5 × faster than production. The IdP timeout becomes 400 ms and the deadline
 * 2 s (the local tenant answers in a few ms), the fleet back-off 2 s, testSecret's patience 9 s;
 * every duration stays a whole number of its unit, and each is within config.ts's bounds.
 */
export const TEST_TIME_SCALE = 0.2;

/** Read by config.ts but set per stage or per function, so not a setting the tests take over. */
const STAGE_DEPENDENT = new Set(['TOKEN_TABLE_NAME', 'TOKEN_SEAL_KEY_ID', 'GRANTS_FILE', 'POWERTOOLS_SERVICE_NAME', 'PROOF_SERVER_ID']);

const SERVERLESS_YML = join(import.meta.dirname, '..', '..', 'serverless.yml');

let cached: Readonly<Record<string, string>> | undefined;

/** The deployed value of every setting config.ts reads that is the same on every stage. */
export function deployedSettings(): Readonly<Record<string, string>> {
  if (cached !== undefined) return cached;
  const lines = readFileSync(SERVERLESS_YML, 'utf8').split('\n');
  const params = mapping(lines, ['params', 'default']);
  const environment = mapping(lines, ['provider', 'environment']);
  const settings: Record<string, string> = {};
  for (const name of CONFIG_VARIABLES) {
    if (STAGE_DEPENDENT.has(name)) continue;
    const raw = environment[name];
    if (raw === undefined) throw new Error(`serverless.yml: provider.environment does not set ${name}`);
    const value = raw.replace(/\$\{param:(\w+)\}/g, (_, param: string) => {
      const resolved = params[param];
      if (resolved === undefined) throw new Error(`serverless.yml: ${name} uses \${param:${param}}, which params.default does not set`);
      return resolved;
    });
    if (value.includes('${')) throw new Error(`serverless.yml: ${name} depends on the stage (${raw}); list it in STAGE_DEPENDENT`);
    settings[name] = value;
  }
  cached = Object.freeze(settings);
  return cached;
}

/** The stage parameters serverless.yml declares, with their defaults (`params.default`), as strings. */
export function stageParamDefaults(): Readonly<Record<string, string>> {
  const params = mapping(readFileSync(SERVERLESS_YML, 'utf8').split('\n'), ['params', 'default']);
  // YAML quoting aside, a value is what osls would resolve: '' stays empty.
  return Object.fromEntries(Object.entries(params).map(([name, value]) => [name, value.replace(/^'(.*)'$/, '$1')]));
}

/** A duration: scaled by the clock's factor (a faster clock, shorter durations). */
export function isDuration(name: string): boolean {
  return /_(MS|SECONDS)$/.test(name);
}

/** A count per hour: divided by the factor (a faster clock, more per real hour). */
function isRate(name: string): boolean {
  return /_PER_HOUR$/.test(name);
}

/**
 * The deployed settings on a clock `1 / factor` times faster (`factor` in (0, 1]; 1 = exactly the
 * deployed values). Throws when a setting would not stay a whole number: pick another factor.
 */
export function scaled(factor: number): Record<string, string> {
  if (!(factor > 0 && factor <= 1)) throw new Error(`time scale must be in (0, 1] (a faster clock, never a slower one), got ${factor}`);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(deployedSettings())) {
    if (!isDuration(name) && !isRate(name)) {
      out[name] = value;
      continue;
    }
    const exact = isDuration(name) ? Number(value) * factor : Number(value) / factor;
    const whole = Math.round(exact);
    if (Math.abs(exact - whole) > 1e-6) throw new Error(`${name}=${value} at time scale ${factor} is ${exact}, not a whole number`);
    out[name] = String(whole);
  }
  return out;
}

/**
 * The `key: value` pairs directly under a nested block (`['provider', 'environment']`) of a YAML
 * file written as serverless.yml is: two-space indents, one scalar per line, comments on their own
 * lines. Quoted values are unquoted; anything else is kept as written.
 */
function mapping(lines: string[], path: string[]): Record<string, string> {
  let start = 0;
  let end = lines.length;
  for (const [depth, key] of path.entries()) {
    const indent = ' '.repeat(2 * depth);
    const at = lines.findIndex((line, i) => i >= start && i < end && line === `${indent}${key}:`);
    if (at < 0) throw new Error(`serverless.yml: no ${path.slice(0, depth + 1).join('.')} block`);
    start = at + 1;
    const after = lines.findIndex((line, i) => i >= start && i < end && line.trim() !== '' && !line.trimStart().startsWith('#') && indentOf(line) <= 2 * depth);
    end = after < 0 ? end : after;
  }
  const entries: Record<string, string> = {};
  const indent = 2 * path.length;
  for (const line of lines.slice(start, end)) {
    if (line.trim() === '' || line.trimStart().startsWith('#') || indentOf(line) !== indent) continue;
    const match = /^\s*([A-Za-z_][\w]*):\s*(.*)$/.exec(line);
    if (match === null) throw new Error(`serverless.yml: cannot read "${line.trim()}" under ${path.join('.')}`);
    entries[match[1]!] = unquote(match[2]!.trim());
  }
  return entries;
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

function unquote(value: string): string {
  if (value.startsWith("'") && value.endsWith("'") && value.length >= 2) return value.slice(1, -1).replaceAll("''", "'");
  if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) return JSON.parse(value) as string;
  return value;
}
