/**
 * From the user's grants file to the local stack: the Auth0 tenant that serves it (an application
 * per client with its authentication method, an API per audience, the client grants), the local
 * keys of every granted principal, the copy of the file the vendor reads (only `domain` changed),
 * and one command per grant that vends it. Pure, apart from generating keys: local/stack.ts
 * starts the servers and writes the files.
 *
 * The grants themselves are the user's: the tenant grants each client exactly the scopes the
 * grants file gives its audiences, so a grant that works here asks Auth0 for what it would ask
 * the real tenant for.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { GrantBook } from '../functions/core/grants.js';
import type { ClientAuthMethod, TenantApi, TenantClient } from './auth0Tenant.js';
import type { LocalCredential } from './sigv4.js';

/**
 * The Management API scopes rotation asks for, per kind of credential: functions/core/rotation.ts
 * (SECRET_ROTATION_SCOPES, KEY_ROTATION_SCOPES). Auth0 refuses a token request for scopes the
 * client grant lacks, so a management client gets the union over the clients it rotates.
 */
const SECRET_ROTATION_SCOPES = ['update:client_keys'];
const KEY_ROTATION_SCOPES = ['create:client_credentials', 'delete:client_credentials', 'read:client_keys', 'update:client_keys'];

/** The `clientGrants` key local/auth0Tenant.ts reads as the Management API (MANAGEMENT_GRANT_KEY). */
const MANAGEMENT = 'management';

/** One application of the local tenant, for one client of the grants file. */
export interface LocalClient {
  /** its name in the grants file */
  readonly name: string;
  /** the tenant's client_id */
  readonly clientId: string;
  readonly authMethod: ClientAuthMethod;
  /** the grants file's secretId (a name or an ARN) */
  readonly secretId: string;
  /** client_secret_post / client_secret_basic: the local secret */
  readonly clientSecret?: string;
  /** private_key_jwt: the PKCS#8 PEM private key whose public half the tenant holds */
  readonly privateKeyPem?: string;
  readonly tenantClient: TenantClient;
}

export interface LocalTenantPlan {
  readonly clients: readonly LocalClient[];
  readonly apis: readonly TenantApi[];
  /** clientId → audience (or 'management') → scopes, as `startLocalAuth0Tenant` takes them */
  readonly clientGrants: Record<string, Record<string, string[]>>;
  readonly managementApi: boolean;
}

/** The local tenant for `book`: fresh secrets and keys, the user's grants. */
export function planLocalTenant(book: GrantBook): LocalTenantPlan {
  const clients: LocalClient[] = [];
  for (const client of book.clients.values()) {
    const clientId = `local-${client.name}`;
    if (client.authMethod === 'private_key_jwt') {
      // Auth0 accepts RSA keys of at least 2048 bits as client credentials (local/auth0Tenant.ts newCredential).
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      clients.push({
        name: client.name,
        clientId,
        authMethod: client.authMethod,
        secretId: client.secretId,
        privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        tenantClient: { clientId, authMethod: client.authMethod, credentials: [{ name: `${client.name}-local`, pem }] },
      });
    } else {
      const clientSecret = randomBytes(24).toString('base64url');
      clients.push({
        name: client.name,
        clientId,
        authMethod: client.authMethod,
        secretId: client.secretId,
        clientSecret,
        tenantClient: { clientId, authMethod: client.authMethod, clientSecret },
      });
    }
  }

  const idOf = (name: string): string => `local-${name}`;
  const apiScopes = new Map<string, Set<string>>();
  const apiFormat = new Map<string, 'jwt' | 'opaque'>();
  const clientGrants: Record<string, Record<string, string[]>> = {};
  for (const grant of book.grants) {
    const scopes = apiScopes.get(grant.audience) ?? new Set<string>();
    for (const scope of grant.scopes) scopes.add(scope);
    apiScopes.set(grant.audience, scopes);
    // One audience, one client (GrantBook.parse): the API's token format is that client's.
    apiFormat.set(grant.audience, grant.client.tokenFormat);
    const byAudience = (clientGrants[idOf(grant.client.name)] ??= {});
    byAudience[grant.audience] = [...new Set([...(byAudience[grant.audience] ?? []), ...grant.scopes])];
  }
  for (const client of book.clients.values()) {
    const manager = client.rotationManagementClient;
    if (manager === undefined) continue;
    const byAudience = (clientGrants[idOf(manager)] ??= {});
    const needed = client.authMethod === 'private_key_jwt' ? KEY_ROTATION_SCOPES : SECRET_ROTATION_SCOPES;
    byAudience[MANAGEMENT] = [...new Set([...(byAudience[MANAGEMENT] ?? []), ...needed])].sort();
  }
  const apis = [...apiScopes].map(([audience, scopes]) => ({ audience, scopes: [...scopes], tokenFormat: apiFormat.get(audience) ?? 'jwt' }));
  return { clients, apis, clientGrants, managementApi: true };
}

/**
 * The grants document the local vendor reads: the user's, with every client's `domain` pointed at
 * the local tenant (`origin`), and a secret named by ARN renamed to the ARN the emulator gave it
 * (`secretArns`: grants-file secretId → local ARN). Nothing else changes.
 */
export function localGrantsDocument(doc: unknown, origin: string, secretArns: ReadonlyMap<string, string>): unknown {
  const root = doc as { clients: Record<string, Record<string, unknown>> } & Record<string, unknown>;
  const clients = Object.fromEntries(
    Object.entries(root.clients).map(([name, client]) => {
      const secretId = typeof client.secretId === 'string' ? (secretArns.get(client.secretId) ?? client.secretId) : client.secretId;
      return [name, { ...client, domain: origin, secretId }];
    }),
  );
  return { ...root, clients };
}

/**
 * The name a secret named by ARN gets on the emulator: the ARN's secret name without the six
 * characters Secrets Manager appends (`…:secret:NAME-AbCdEf`). Undefined for a plain name.
 */
export function secretNameOfArn(secretId: string): string | undefined {
  const match = /^arn:[\w-]+:secretsmanager:[\w-]*:\d*:secret:(.+?)(?:-[A-Za-z0-9]{6})?$/.exec(secretId);
  return match?.[1];
}

/** A principal of a grant and the concrete one the local stack gives keys to. */
export interface GrantPrincipal {
  /** as the grants file writes it, e.g. `arn:aws:iam::111122223333:role/reporting-*` */
  readonly pattern: string;
  /** a principal it matches: `*` becomes `example` (reporting-* → reporting-example) */
  readonly arn: string;
  /** the pinned unique id, if the grant pins one: the STS stand-in must report it */
  readonly uniqueId?: string;
}

/** The example principal for a pattern: each `*` (allowed only in the name) becomes `example`. */
export function examplePrincipal(pattern: string): string {
  return pattern.replace(/\*/g, 'example');
}

/** The principals of each grant, in grant order. */
export function grantPrincipals(book: GrantBook): GrantPrincipal[][] {
  return book.grants.map((grant) =>
    grant.principals.map((p) => ({ pattern: p.source, arn: examplePrincipal(p.source), ...(p.uniqueId === undefined ? {} : { uniqueId: p.uniqueId }) })),
  );
}

/**
 * The local keys: every existing entry kept as it is (its key, its place: the first one signs by
 * default), and one new key for each granted principal that has none. A principal whose grant pins
 * a unique id gets it on its entry, so the STS stand-in reports the id the grant expects.
 */
export function mergeCredentials(existing: readonly LocalCredential[], principals: readonly GrantPrincipal[]): { credentials: LocalCredential[]; added: string[] } {
  const credentials = existing.map((c) => ({ ...c }));
  const added: string[] = [];
  for (const principal of principals) {
    const known = credentials.find((c) => c.principalArn === principal.arn);
    if (known !== undefined) {
      if (principal.uniqueId !== undefined && known.uniqueId === undefined) known.uniqueId = principal.uniqueId;
      continue;
    }
    credentials.push({
      accessKeyId: `AKIALOCAL${randomBytes(6).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64url'),
      principalArn: principal.arn,
      ...(principal.arn.includes(':role/') ? { sessionName: 'local-caller' } : {}),
      ...(principal.uniqueId === undefined ? {} : { uniqueId: principal.uniqueId }),
    });
    added.push(principal.arn);
  }
  return { credentials, added };
}

/** Checks the shape of a credentials file's content; throws naming the first bad entry. */
export function parseCredentialsFile(doc: unknown, file: string): LocalCredential[] {
  if (!Array.isArray(doc)) throw new Error(`${file} must be a JSON array of local credentials: fix it or delete it (the stack recreates it)`);
  return doc.map((entry: unknown, i) => {
    const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    const optional = ['sessionName', 'sessionToken', 'uniqueId'].every((key) => e[key] === undefined || typeof e[key] === 'string');
    if (typeof e.accessKeyId !== 'string' || typeof e.secretAccessKey !== 'string' || typeof e.principalArn !== 'string' || !optional) {
      throw new Error(`${file}[${i}] needs accessKeyId, secretAccessKey and principalArn strings: fix it or delete the file (the stack recreates it)`);
    }
    return e as unknown as LocalCredential;
  });
}

/** A word the shell reads back unchanged: bare when it has no special character, else single-quoted. */
export function shellWord(word: string): string {
  if (/^[\w@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The scope argument, double-quoted as the README writes it when that is safe. */
function scopeWord(scope: string): string {
  return /^[\w@%+=:,./ -]+$/.test(scope) ? `"${scope}"` : shellWord(scope);
}

export interface TokenCommandOptions {
  /** `--endpoint URL` (the API) or `--function NAME --lambda-endpoint URL` (direct invocation) */
  readonly target: { endpoint: string } | { functionName: string; lambdaEndpoint: string };
  readonly principalArn: string;
  readonly audience: string;
  readonly scopes: readonly string[];
  /** the state directory, when it is not the default one `--local` reads */
  readonly stateDir?: string;
}

/** `npm run -s token -- --local …`: a command that vends the grant with the principal's local key. */
export function tokenCommand(opts: TokenCommandOptions): string {
  const env = opts.stateDir === undefined ? '' : `TOKEN_VENDOR_LOCAL_DIR=${shellWord(opts.stateDir)} `;
  const target =
    'endpoint' in opts.target
      ? `--endpoint ${shellWord(opts.target.endpoint)}`
      : `--function ${shellWord(opts.target.functionName)} --lambda-endpoint ${shellWord(opts.target.lambdaEndpoint)}`;
  return `${env}npm run -s token -- --local ${target} --as ${shellWord(opts.principalArn)} --audience ${shellWord(opts.audience)} --scope ${scopeWord(opts.scopes.join(' '))}`;
}
