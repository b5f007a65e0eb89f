/**
 * The ops commands themselves: status, flush, refresh, rotate. Loaded by ops/cli.ts only once the
 * arguments and the configuration are known to be good, so the AWS clients and the vendor are
 * built here and nowhere earlier.
 */
import { randomUUID } from 'node:crypto';
import { RotateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { VendorConfig } from '../functions/config.js';
import type { TokenRecord } from '../functions/core/ports.js';
import { createVendor, type Vendor } from '../functions/vendor.js';
import type { OpsRun } from './args.js';
import { OpsAwsCallError } from './awsContext.js';
import { table } from './table.js';

/** Run the command; what it returns is printed as JSON under --json. */
export async function runCommand(run: OpsRun, config: VendorConfig): Promise<unknown> {
  const vendor = createVendor(config);
  const say = (line: string): void => {
    if (!run.json) console.log(line);
  };
  const { client, audience, organization } = run;
  const which = `${client}${audience ? ` for ${audience}` : ''}${organization ? ` in organization ${organization}` : ''}`;
  switch (run.command) {
    case 'status':
      return status(vendor, config, run.json, say);
    case 'flush': {
      const removed = await vendor.service.flush(client!, audience, organization);
      // Nothing matched is worth saying plainly: a typo'd audience, or a token already gone, would
      // otherwise read like a flush that worked.
      if (removed === 0) say(`flush matched nothing: no cached token of ${which} in table ${config.tableName}; nothing removed`);
      else say(`flushed ${removed} cached token(s) of ${which}; instances drop their copies within ${config.memoryRevalidateMs / 1000} s`);
      return { flushed: removed };
    }
    case 'refresh': {
      const tokens = (await vendor.refresher.list()).filter(
        (t) => t.client === client && (audience === undefined || t.audience === audience) && (organization === undefined || t.organization === organization),
      );
      const results = [];
      for (const token of tokens) {
        const org = token.organization === undefined ? {} : { organization: token.organization };
        const request = config.grants.requestFor(token.client, token.audience, token.scopes, token.organization);
        if (request === undefined) {
          results.push({ audience: token.audience, scopes: token.scopes, ...org, outcome: 'ungranted' });
          continue;
        }
        // No look-ahead limit: due or not, replace it now.
        const outcome = await vendor.service.refresh(request, Number.MAX_SAFE_INTEGER);
        results.push({ audience: token.audience, scopes: token.scopes, ...org, outcome });
      }
      if (results.length === 0) say(`no cached token of ${which} in table ${config.tableName} to refresh`);
      else for (const line of table(['outcome', 'audience', 'scopes', 'organization'], results.map((r) => [r.outcome, r.audience, r.scopes.join(' '), r.organization ?? '-']))) say(line);
      return { refreshed: results };
    }
    case 'rotate':
      return rotate(vendor, config, client!, run.target.kind === 'stage', say);
  }
}

async function status(vendor: Vendor, config: VendorConfig, json: boolean, say: (line: string) => void): Promise<unknown> {
  const now = Date.now();
  // One consistent scan, read through the table's own adapter: records, never a token; lease and
  // back-off keys are hashes, never secrets.
  const contents = await vendor.store.inspect();
  const tokens = contents.tokens.map((t: TokenRecord) => ({
    fingerprint: t.fingerprint,
    client: t.client,
    audience: t.audience,
    scopes: t.scopes.join(' '),
    // The Auth0 organization the token is for, as requested (null: none).
    organization: t.organization ?? null,
    expiresAt: new Date(t.expiresAt * 1000).toISOString(),
    expiresIn: Math.floor(t.expiresAt - now / 1000),
    fetchedAt: new Date(t.fetchedAt).toISOString(),
    lastUsedAt: t.lastUsedAt === undefined ? null : new Date(t.lastUsedAt).toISOString(),
  }));
  const leases = contents.leases.filter((l) => l.until > now).map((l) => ({ key: l.name, until: new Date(l.until).toISOString() }));
  const backoffs = contents.backoffs.filter((b) => b.until > now).map((b) => ({ clientKey: b.clientKey, reason: b.reason, until: new Date(b.until).toISOString() }));
  if (!json) {
    say(`table ${config.tableName}: ${tokens.length} token(s), ${leases.length} active lease(s), ${backoffs.length} active back-off(s)`);
    const rows = (headers: string[], cells: string[][]) => {
      if (cells.length > 0) for (const line of table(headers, cells, '  ')) say(line);
    };
    rows(
      ['fingerprint', 'client', 'audience', 'scopes', 'organization', 'expires in', 'expires at', 'fetched at', 'last used at'],
      tokens.map((t) => [t.fingerprint, t.client, t.audience, t.scopes, t.organization ?? '-', `${t.expiresIn} s`, t.expiresAt, t.fetchedAt, t.lastUsedAt ?? '-']),
    );
    rows(['lease', 'until'], leases.map((l) => [l.key, l.until]));
    rows(['back-off (client key)', 'reason', 'until'], backoffs.map((b) => [b.clientKey, b.reason, b.until]));
  }
  return { table: config.tableName, tokens, leases, backoffs };
}

async function rotate(vendor: Vendor, config: VendorConfig, name: string, deployed: boolean, say: (line: string) => void): Promise<unknown> {
  const secretId = config.grants.clients.get(name)!.secretId;
  if (deployed) {
    // Deployed: Secrets Manager runs the rotate function's four steps.
    const out = await new SecretsManagerClient({})
      .send(new RotateSecretCommand({ SecretId: secretId, RotateImmediately: true }))
      .catch((error: unknown) => {
        throw new OpsAwsCallError('Secrets Manager', `secret ${secretId}`, `Secrets Manager RotateSecret failed (${error instanceof Error ? error.name : 'Unknown'})`, { cause: error });
      });
    say(`rotation of ${name} started: secret ${out.Name}, version ${out.VersionId}; follow it in the rotate function's log`);
    return { started: true, versionId: out.VersionId };
  }
  // Local: no Lambda service to call back, so play Secrets Manager here.
  const token = randomUUID();
  for (const step of ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const) {
    await vendor.rotationHandler({ SecretId: secretId, ClientRequestToken: token, Step: step });
    say(`${step} done`);
  }
  say(`rotated ${name}: version ${token} is AWSCURRENT`);
  return { rotated: true, versionId: token };
}
