/**
 * `npm run token -- --organization ORG` (client/cliArgs.ts, client/cli.ts; issue 12): the flag is
 * parsed and checked as the client checks it, and the request the command sends names the
 * organization and carries a proof bound to it. Against a recording stand-in for the vendor
 * (test/client/recordingVendor.ts): what the vendor does with an organization is its own tests'.
 */
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTokenArgs } from '../../client/cliArgs.js';
import { ORDERS } from '../helpers/testStack.js';
import { runCommand, type Run } from '../helpers/runCommand.js';
import { REGION, SERVER_ID } from './fakes.js';
import { proofBinds, startRecordingVendor, type RecordingVendor } from './recordingVendor.js';
import { CHECKOUT, cleanEnv, envKeysOf } from './vendorStack.js';

const REPO = resolve(import.meta.dirname, '../..');
const ACME = 'org_W0pZ5hnWr4BCGg8a';
const DEPLOYED = ['--endpoint', 'https://abc123.execute-api.eu-west-1.amazonaws.com/prod', '--region', REGION, '--server-id', SERVER_ID];

let vendor: RecordingVendor;

beforeAll(async () => {
  vendor = await startRecordingVendor([CHECKOUT]);
});

afterAll(async () => {
  await vendor?.close();
});

/** `npm run token -- ...` as npm runs it (tsx client/cli.ts), signing with CHECKOUT's keys. */
function token(args: string[]): Promise<Run> {
  return runCommand(process.execPath, ['--import', 'tsx', join(REPO, 'client/cli.ts'), ...args], { cwd: REPO, env: cleanEnv(envKeysOf(CHECKOUT)) });
}

describe('--organization', () => {
  it('is parsed as given, and absent without the flag', () => {
    expect(parseTokenArgs(['--audience', ORDERS, '--organization', ACME, ...DEPLOYED])).toMatchObject({ kind: 'run', organization: ACME });
    expect(parseTokenArgs(['--audience', ORDERS, '--organization', 'o'.repeat(100), ...DEPLOYED])).toMatchObject({ kind: 'run', organization: 'o'.repeat(100) });
    expect(parseTokenArgs(['--audience', ORDERS, ...DEPLOYED])).not.toHaveProperty('organization');
  });

  it.each([
    ['empty', '', '--organization must be a non-empty string'],
    ['blank', '  ', '--organization must be a non-empty string'],
    ['101 characters', 'o'.repeat(101), '--organization must be at most 100 characters'],
    ['a newline', 'acme\nglobex', '--organization must not contain control characters'],
  ])('refuses a value that is %s as bad usage', (_case, organization, message) => {
    expect(parseTokenArgs(['--audience', ORDERS, '--organization', organization, ...DEPLOYED])).toEqual({ kind: 'error', message });
  });

  it('sends the organization in the body, with a proof bound to it, and prints the token', async () => {
    const before = vendor.requests.length;

    const run = await token(['--audience', ORDERS, '--scope', 'read:orders', '--organization', ACME, '--endpoint', vendor.url, '--region', REGION, '--server-id', SERVER_ID]);

    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout === `${vendor.accessToken}\n`).toBe(true);
    const sent = vendor.requests.slice(before);
    expect(sent.map((r) => r.body)).toEqual([{ audience: ORDERS, scope: 'read:orders', organization: ACME }]);
    expect(proofBinds(sent[0]?.proof, { audience: ORDERS, scope: 'read:orders', organization: ACME }, CHECKOUT)).toBe(true);
    expect(proofBinds(sent[0]?.proof, { audience: ORDERS, scope: 'read:orders' }, CHECKOUT)).toBe(false);
  });

  it('a bad value -> exit 2 with the usage, and no request', async () => {
    const before = vendor.requests.length;

    const run = await token(['--audience', ORDERS, '--organization', 'acme\tglobex', '--endpoint', vendor.url, '--region', REGION, '--server-id', SERVER_ID]);

    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toMatch(/^token: --organization must not contain control characters\n\nusage: /);
    expect(vendor.requests).toHaveLength(before);
  });
});
