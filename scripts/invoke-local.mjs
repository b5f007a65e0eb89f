#!/usr/bin/env node
// `npm run invoke:local -- events/<file>.json [function]`: `osls invoke local -f <function, default vend> --stage local` with the
// environment that points the function at the running local stack (`npm start` writes it).
//
// A vend request must carry an identity proof (docs/identity-proof.md), and a proof is good for
// 60 s, so an events file cannot hold one. This script adds a fresh one to a vend event that has
// none (the `X-Token-Vendor-Proof` header of an API Gateway event, the `proof` of a direct
// invocation), signed with the local caller's key (the first entry of .local/credentials.json) for
// the stack's STS stand-in and server id, and invokes with that copy of the event (written to
// .local/, removed afterwards). An event that already has a proof is passed through untouched.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tsImport } from 'tsx/esm/api';

const event = process.argv[2];
const fn = process.argv[3] ?? 'vend';
if (!event) {
  console.error('usage: npm run invoke:local -- events/<file>.json [vend|refresh]');
  process.exit(2);
}
// The running stack's state directory: TOKEN_VENDOR_LOCAL_DIR, as npm start and npm run token use it.
const { localStateDir } = await tsImport('../local/stackState.ts', import.meta.url);
const stateDir = localStateDir(process.env, process.cwd(), process.cwd());
const envFile = join(stateDir, 'invoke-local.env.json');
if (!existsSync(envFile)) {
  console.error(`${envFile} is missing: start the local stack first (npm start, in another terminal)`);
  process.exit(2);
}
const env = JSON.parse(readFileSync(envFile, 'utf8'));

let payloadFile = event;
let temporary;
const doc = JSON.parse(readFileSync(event, 'utf8'));
if (fn === 'vend') {
  if (!env.STS_ENDPOINT || !env.PROOF_SERVER_ID) {
    console.error(`${envFile} names no STS_ENDPOINT / PROOF_SERVER_ID: restart the local stack (npm start) to sign a proof`);
    process.exit(2);
  }
  const [caller] = JSON.parse(readFileSync(join(stateDir, 'credentials.json'), 'utf8'));
  if (!caller) {
    console.error(`${join(stateDir, 'credentials.json')} holds no credentials`);
    process.exit(2);
  }
  const { presignProof, withFreshProof } = await tsImport('../local/stsProof.ts', import.meta.url);
  // The local caller signs, whoever the event names: an API event naming another role is then
  // refused as a proof made by another principal, as the deployed vendor would refuse it.
  const sign = (_callerArn, audience, scope, organization) =>
    presignProof({
      credential: { accessKeyId: caller.accessKeyId, secretAccessKey: caller.secretAccessKey, ...(caller.sessionToken ? { sessionToken: caller.sessionToken } : {}) },
      region: env.AWS_REGION,
      stsOrigin: env.STS_ENDPOINT,
      serverId: env.PROOF_SERVER_ID,
      audience,
      scope,
      organization,
    });
  const signed = withFreshProof(doc, sign, caller.principalArn);
  if (signed !== doc) {
    temporary = join(stateDir, `invoke-local.event.${process.pid}.json`);
    writeFileSync(temporary, `${JSON.stringify(signed)}\n`, { mode: 0o600 });
    payloadFile = temporary;
    console.error(`invoke:local: added a fresh identity proof (valid 60 s) for ${caller.principalArn} to the event`);
  }
}

const args = ['osls', 'invoke', 'local', '-f', fn, '--stage', 'local', '-p', payloadFile];
for (const [key, value] of Object.entries(env)) args.push('-e', `${key}=${value}`);
let status = 1;
try {
  const result = spawnSync('npx', args, {
    stdio: 'inherit',
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  });
  status = result.status ?? 1;
} finally {
  if (temporary) rmSync(temporary, { force: true });
}
process.exit(status);
