/**
 * examples/python/vend_token.py, run with python3 and botocore: its proof verifies against the
 * local STS stand-in through the vendor's own checks, and the script gets a token from the real
 * vendor (functions/vendor.ts on a test stack: local Auth0 tenant, moto) behind the local gateway.
 * The child gets a clean environment: only the test's keys, no profile, no instance metadata.
 * (test/local/stsProof.test.ts checks the local presigner against botocore's; this checks the
 * snippet callers copy.)
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestBindingHash } from '../../client/index.js';
import { StsIdentityVerifier } from '../../functions/adapters/stsIdentityVerifier.js';
import { IdentityProofError } from '../../functions/core/errors.js';
import { requestBinding as vendorRequestBinding } from '../../functions/core/identityProof.js';
import { requestBinding as localRequestBinding } from '../../local/stsProof.js';
import type { LocalCredential } from '../../local/gateway.js';
import { ORDERS } from '../helpers/testStack.js';
import { REGION, SERVER_ID } from './fakes.js';
import { CHECKOUT, REPORTING as REPORTING_TEMPORARY, cleanEnv, envKeysOf as keysOf, startVendorStack, type VendorStack } from './vendorStack.js';
import { runCommand, type Run } from '../helpers/runCommand.js';
import { proofBinds, startRecordingVendor } from './recordingVendor.js';

const SCRIPT = resolve(import.meta.dirname, '../../examples/python/vend_token.py');


function python(args: string[], env: Record<string, string>): Promise<Run> {
  return runCommand('python3', args, { env: cleanEnv(env) });
}

/** The proof the snippet's make_proof() builds, with botocore's default credential chain. */
async function pythonProof(who: LocalCredential, stsOrigin: string, audience: string, scope: string | null): Promise<string> {
  const code = [
    'import sys, botocore.session',
    `sys.path.insert(0, ${JSON.stringify(resolve(SCRIPT, '..'))})`,
    'from vend_token import make_proof',
    'creds = botocore.session.get_session().get_credentials().get_frozen_credentials()',
    'print(make_proof(creds, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None, sys.argv[5] if len(sys.argv) > 5 else None))',
  ].join('\n');
  const run = await python(['-c', code, REGION, SERVER_ID, audience, scope ?? '', stsOrigin], keysOf(who));
  expect(run).toMatchObject({ code: 0, stderr: '' });
  return run.stdout.trim();
}

let vs: VendorStack;
let verifier: StsIdentityVerifier;

beforeAll(async () => {
  vs = await startVendorStack();
  verifier = new StsIdentityVerifier({ policy: { region: REGION, serverId: SERVER_ID, localStsOrigin: vs.sts.origin }, timeoutMs: 5_000 });
});

afterAll(async () => {
  await vs?.close();
});

describe('vend_token.py: the proof', () => {
  it('passes the vendor checks and verifies at the local STS as the signer, with long-term and temporary keys', async () => {
    const checkoutProof = await pythonProof(CHECKOUT, vs.sts.origin, ORDERS, 'write:orders read:orders');
    const reportingProof = await pythonProof(REPORTING_TEMPORARY, vs.sts.origin, ORDERS, null);

    const checkout = await verifier.verify(checkoutProof, { audience: ORDERS, scope: 'read:orders write:orders' });
    const reporting = await verifier.verify(reportingProof, { audience: ORDERS, scope: undefined });

    expect(checkout.arn).toBe('arn:aws:iam::111122223333:role/checkout-service');
    expect(reporting.arn).toBe('arn:aws:iam::111122223333:role/reporting-daily');
  });

  it('is bound: another scope, audience or deployment fails at STS', async () => {
    const proof = await pythonProof(CHECKOUT, vs.sts.origin, ORDERS, 'read:orders');
    const otherDeployment = new StsIdentityVerifier({ policy: { region: REGION, serverId: 'token-vendor-other', localStsOrigin: vs.sts.origin }, timeoutMs: 5_000 });

    await expect(verifier.verify(proof, { audience: ORDERS, scope: 'read:orders write:orders' })).rejects.toBeInstanceOf(IdentityProofError);
    await expect(verifier.verify(proof, { audience: 'https://billing.example.com', scope: 'read:orders' })).rejects.toBeInstanceOf(IdentityProofError);
    await expect(otherDeployment.verify(proof, { audience: ORDERS, scope: 'read:orders' })).rejects.toBeInstanceOf(IdentityProofError);
    await expect(verifier.verify(proof, { audience: ORDERS, scope: 'read:orders' })).resolves.toMatchObject({ arn: 'arn:aws:iam::111122223333:role/checkout-service' });
  });
});

describe('vend_token.py against the real vendor behind the local gateway', () => {
  function vendEnv(who: LocalCredential): Record<string, string> {
    return { ...keysOf(who), TOKEN_VENDOR_ENDPOINT: vs.gateway.url, AWS_REGION: REGION, TOKEN_VENDOR_SERVER_ID: SERVER_ID, TOKEN_VENDOR_STS_ENDPOINT: vs.sts.origin };
  }

  it('prints the token the vendor got from the IdP, and nothing else', async () => {
    vs.stack.tenant.resetCounters();

    const run = await python([SCRIPT, '--audience', ORDERS, '--scope', 'read:orders'], vendEnv(CHECKOUT));

    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    const issued = vs.stack.tenant.issued().filter((t) => t.audience === ORDERS && t.scope === 'read:orders');
    expect(issued.length).toBeGreaterThan(0);
    // Compared, never printed: the test log is scanned for tokens.
    expect(run.stdout === `${issued.at(-1)?.accessToken}\n`).toBe(true);
  });

  it('a scope the caller is not granted -> exit 1, the OAuth error on stderr, nothing on stdout', async () => {
    const run = await python([SCRIPT, '--audience', ORDERS, '--scope', 'admin:orders'], vendEnv(CHECKOUT));

    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^vend_token: access_denied: the token vendor answered 403 access_denied/);
  });

  it('no endpoint -> usage error, exit 2', async () => {
    const { TOKEN_VENDOR_ENDPOINT: _omitted, ...env } = vendEnv(CHECKOUT);

    const run = await python([SCRIPT, '--audience', ORDERS], env);

    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('--endpoint is required');
  });
});

describe('vend_token.py: an Auth0 organization (issue 12)', () => {
  const ACME = 'org_W0pZ5hnWr4BCGg8a';

  it('binds \\n<organization>: one fixed vector, the same in Python, the client, local/stsProof.ts and the vendor', async () => {
    // Known answer from coreutils:
    //   printf 'tvp1\nhttps://orders.example.com\nread:orders write:orders\norg_W0pZ5hnWr4BCGg8a' | sha256sum
    const expected = '23ca7bc7ed70eac1a3331281c65e3593738deb16bf0b84b7fc18b9e2d60a7171';
    const code = [
      'import sys',
      `sys.path.insert(0, ${JSON.stringify(resolve(SCRIPT, '..'))})`,
      'from vend_token import request_binding',
      'print(request_binding(sys.argv[1], sys.argv[2], sys.argv[3]))',
      // Without an organization: the binding of before.
      'print(request_binding(sys.argv[1], sys.argv[2]))',
    ].join('\n');

    const run = await python(['-c', code, ORDERS, 'write:orders read:orders write:orders', ACME], {});

    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [withOrganization, without] = run.stdout.trim().split('\n');
    expect(withOrganization).toBe(expected);
    expect(requestBindingHash(ORDERS, 'write:orders read:orders', ACME)).toBe(expected);
    expect(localRequestBinding(ORDERS, 'write:orders read:orders', ACME)).toBe(expected);
    expect(vendorRequestBinding(ORDERS, 'write:orders read:orders', ACME)).toBe(expected);
    expect(without).toBe(vendorRequestBinding(ORDERS, 'read:orders write:orders'));
  });

  it('--organization: sent in the body exactly as named, with a proof bound to it', async () => {
    const recorder = await startRecordingVendor([CHECKOUT]);
    try {
      const run = await python([SCRIPT, '--audience', ORDERS, '--scope', 'read:orders', '--organization', ACME], {
        ...keysOf(CHECKOUT),
        TOKEN_VENDOR_ENDPOINT: recorder.url,
        AWS_REGION: REGION,
        TOKEN_VENDOR_SERVER_ID: SERVER_ID,
      });

      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout === `${recorder.accessToken}\n`).toBe(true);
      expect(recorder.requests.map((r) => r.body)).toEqual([{ audience: ORDERS, scope: 'read:orders', organization: ACME }]);
      const { proof } = recorder.requests[0]!;
      expect(proofBinds(proof, { audience: ORDERS, scope: 'read:orders', organization: ACME }, CHECKOUT)).toBe(true);
      expect(proofBinds(proof, { audience: ORDERS, scope: 'read:orders' }, CHECKOUT)).toBe(false);
      expect(proofBinds(proof, { audience: ORDERS, scope: 'read:orders', organization: 'globex' }, CHECKOUT)).toBe(false);
    } finally {
      await recorder.close();
    }
  });

  it.each([
    ['empty', '', 'non-empty'],
    ['a newline', 'acme\nglobex', 'control characters'],
    ['101 characters', 'o'.repeat(101), 'at most 100'],
  ])('--organization %s -> usage error, exit 2, no request', async (_case, organization, message) => {
    const recorder = await startRecordingVendor([CHECKOUT]);
    try {
      const run = await python([SCRIPT, '--audience', ORDERS, '--organization', organization], {
        ...keysOf(CHECKOUT),
        TOKEN_VENDOR_ENDPOINT: recorder.url,
        AWS_REGION: REGION,
        TOKEN_VENDOR_SERVER_ID: SERVER_ID,
      });

      expect(run).toMatchObject({ code: 2, stdout: '' });
      expect(run.stderr).toContain(message);
      expect(recorder.requests).toHaveLength(0);
    } finally {
      await recorder.close();
    }
  });
});
