/**
 * The deployment, checked offline: `osls package` on this repository (no AWS credentials), then
 * cfn-lint and assertions on the packaged CloudFormation template and artifacts.
 */
import { execFile, spawnSync } from 'node:child_process';
import { isDeepStrictEqual, promisify } from 'node:util';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PARTITION_KEY, TTL_ATTRIBUTE } from '../../functions/adapters/dynamoTokenStore.js';
import { CONFIG_VARIABLES, loadConfig } from '../../functions/config.js';
import { createSealKey, createTokenTable } from '../../local/seed.js';
import { withFreshProof } from '../../local/stsProof.js';
import { deployedSettings } from '../helpers/deployedSettings.js';
import { proofFor } from '../helpers/events.js';
import { REPORTING_ROLE_SESSION, startTestStack, type TestStack } from '../helpers/testStack.js';
import { cfnLint, packageService, runPackage, zipEntries, type CfnResource, type Packaged } from '../../scripts/packaging.js';

const execFileAsync = promisify(execFile);

const BREAK_GLASS = 'arn:aws:iam::111122223333:role/token-vendor-break-glass';
let regional: Packaged;
let privateApi: Packaged;
beforeAll(() => {
  // One after the other: each run rebuilds dist/.
  regional = packageService('citest', { allowedAccountIds: '111122223333,444455556666', organizationId: 'o-abcdef1234' });
  // The private API is also packaged with Lambda active tracing on; the regional one keeps the default (off).
  // It also has a break-glass role and vend's reserved concurrency; the regional one neither.
  privateApi = packageService('citestprivate', { vpcEndpointId: 'vpce-0123456789abcdef0', tracing: 'true', breakGlassRoleArn: BREAK_GLASS, vendReservedConcurrency: '25' });
}, 300_000);

const ofType = (p: Packaged, type: string): Array<[string, CfnResource]> => Object.entries(p.template.Resources).filter(([, r]) => r.Type === type);
const props = (r: CfnResource | undefined): Record<string, any> => (r?.Properties ?? {}) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('packaged template', () => {
  it('passes cfn-lint', () => {
    for (const p of [regional, privateApi]) {
      const lint = cfnLint(p.templatePath);
      expect(lint.output).toBe('');
      expect(lint.status).toBe(0);
    }
  });

  it('puts every API method behind AWS_IAM', () => {
    const methods = ofType(regional, 'AWS::ApiGateway::Method');
    expect(methods.length).toBeGreaterThanOrEqual(1);
    expect(methods.map(([id]) => id)).toContain('ApiGatewayMethodTokenPost');
    for (const [id, m] of methods) expect([id, props(m).AuthorizationType]).toEqual([id, 'AWS_IAM']);
  });

  it('lets in only the configured accounts and organization', () => {
    const api = props(regional.template.Resources.ApiGatewayRestApi);
    expect(api.EndpointConfiguration.Types).toEqual(['REGIONAL']);
    const deny = api.Policy.Statement.find((s: { Effect: string }) => s.Effect === 'Deny');
    expect(deny.Condition.StringNotEquals['aws:PrincipalAccount']).toEqual(['111122223333', '444455556666']);
    expect(deny.Condition.StringNotEquals['aws:PrincipalOrgID']).toBe('o-abcdef1234');
    // allowed: the listed accounts' roots (their IAM policies still decide), and the organization
    const allows = api.Policy.Statement.filter((s: { Effect: string }) => s.Effect === 'Allow');
    expect(allows).toContainEqual(expect.objectContaining({ Principal: { AWS: [{ 'Fn::Sub': 'arn:${AWS::Partition}:iam::111122223333:root' }, { 'Fn::Sub': 'arn:${AWS::Partition}:iam::444455556666:root' }] } }));
    expect(allows).toContainEqual(expect.objectContaining({ Principal: '*', Condition: { StringEquals: { 'aws:PrincipalOrgID': 'o-abcdef1234' } } }));
    expect(allows.filter((s: { Principal: unknown; Condition?: unknown }) => s.Principal === '*' && s.Condition === undefined)).toEqual([]);
  });

  it('defaults to the deploying account only', () => {
    const deny = props(privateApi.template.Resources.ApiGatewayRestApi).Policy.Statement.find(
      (s: { Effect: string; Condition: Record<string, Record<string, unknown>> }) => s.Effect === 'Deny' && s.Condition.StringNotEquals?.['aws:PrincipalAccount'],
    );
    expect(deny.Condition.StringNotEquals['aws:PrincipalAccount']).toEqual([{ Ref: 'AWS::AccountId' }]);
  });

  it('makes a PRIVATE API reachable only through the VPC endpoint', () => {
    const api = props(privateApi.template.Resources.ApiGatewayRestApi);
    expect(api.EndpointConfiguration).toEqual({ Types: ['PRIVATE'], VpcEndpointIds: ['vpce-0123456789abcdef0'] });
    expect(api.Policy.Statement).toContainEqual(
      expect.objectContaining({ Effect: 'Deny', Condition: { StringNotEquals: { 'aws:SourceVpce': 'vpce-0123456789abcdef0' } } }),
    );
  });

  it('declares the table the code expects: key, TTL attribute, CMK encryption, on demand, protected', () => {
    const [[, table] = []] = ofType(regional, 'AWS::DynamoDB::Table');
    const t = props(table);
    expect(t.KeySchema).toEqual([{ AttributeName: PARTITION_KEY, KeyType: 'HASH' }]);
    expect(t.TimeToLiveSpecification).toEqual({ AttributeName: TTL_ATTRIBUTE, Enabled: true });
    expect(t.SSESpecification).toEqual({ SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: { Ref: 'TokenVendorKey' } });
    expect(t.BillingMode).toBe('PAY_PER_REQUEST');
    expect(t.DeletionProtectionEnabled).toBe(true);
    expect(regional.template.Resources.TokenVendorKey?.Type).toBe('AWS::KMS::Key');
  });

  it('sets every environment variable the code reads, and the table name matches', () => {
    for (const name of ['vend', 'refresh', 'rotate']) {
      const fn = props(regional.template.Resources[`${name[0]!.toUpperCase()}${name.slice(1)}LambdaFunction`]);
      const vars = fn.Environment.Variables as Record<string, unknown>;
      for (const variable of CONFIG_VARIABLES) expect([name, Object.keys(vars)]).toEqual([name, expect.arrayContaining([variable])]);
      expect(vars.TOKEN_TABLE_NAME).toBe(props(regional.template.Resources.TokenTable).TableName);
      expect(vars.GRANTS_FILE).toBe(`dist/${name}/grants.json`);
    }
  });

  it('deploys config.ts\'s defaults: each deployed value, set alone, changes nothing', () => {
    // Set per stage or per function, so no default to compare with (checked above or below).
    const perStage = new Set(['TOKEN_TABLE_NAME', 'TOKEN_SEAL_KEY_ID', 'GRANTS_FILE', 'POWERTOOLS_SERVICE_NAME', 'PROOF_SERVER_ID']);
    const base = { TOKEN_TABLE_NAME: 't', TOKEN_SEAL_KEY_ID: 'alias/k' };
    const settingsOf = (env: Record<string, string>) => ({ ...loadConfig(env, process.cwd()), grants: undefined });
    const defaults = settingsOf(base);
    for (const name of ['vend', 'refresh', 'rotate']) {
      const vars = props(regional.template.Resources[`${name[0]!.toUpperCase()}${name.slice(1)}LambdaFunction`]).Environment.Variables as Record<string, unknown>;
      const drift = CONFIG_VARIABLES.filter((v) => !perStage.has(v)).filter((v) => !isDeepStrictEqual(settingsOf({ ...base, [v]: String(vars[v]) }), defaults));
      expect([name, drift]).toEqual([name, []]);
      expect(vars.POWERTOOLS_SERVICE_NAME).toBe('token-vendor-citest');
      expect(vars.PROOF_SERVER_ID).toBe('token-vendor-citest');
      // and what the test suites read from serverless.yml (test/helpers/deployedSettings.ts) is what is packaged
      for (const [variable, value] of Object.entries(deployedSettings())) expect([name, variable, String(vars[variable])]).toEqual([name, variable, value]);
    }
  });

  it('runs every function on nodejs22.x / arm64 with its own role', () => {
    const functions = ofType(regional, 'AWS::Lambda::Function');
    expect(functions.length).toBeGreaterThanOrEqual(1);
    const roles = functions.map(([, f]) => JSON.stringify(props(f).Role));
    expect(new Set(roles).size).toBe(functions.length);
    for (const [, f] of functions) {
      expect(props(f).Runtime).toBe('nodejs22.x');
      expect(props(f).Architectures).toEqual(['arm64']);
    }
  });

  it('grants no data-plane action on Resource "*"', () => {
    const statements = ofType(regional, 'AWS::IAM::Role').flatMap(([, role]) =>
      (props(role).Policies ?? []).flatMap((p: { PolicyDocument: { Statement: unknown[] } }) => p.PolicyDocument.Statement),
    ) as Array<{ Action: string | string[]; Resource: unknown }>;
    expect(statements.length).toBeGreaterThan(0);
    for (const s of statements) {
      const resources = Array.isArray(s.Resource) ? s.Resource : [s.Resource];
      expect([s.Action, resources.includes('*')]).toEqual([s.Action, false]);
    }
    const actionsOf = (roleId: string) =>
      (props(regional.template.Resources[roleId]).Policies as Array<{ PolicyDocument: { Statement: Array<{ Action: string | string[] }> } }>)
        .flatMap((p) => p.PolicyDocument.Statement)
        .flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
    // exactly what functions/adapters/dynamoTokenStore.ts calls on each path
    expect(actionsOf('VendRole').filter((a) => a.startsWith('dynamodb:')).sort()).toEqual(['dynamodb:BatchGetItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem']);
    expect(actionsOf('RefreshRole').filter((a) => a.startsWith('dynamodb:')).sort()).toEqual(['dynamodb:BatchGetItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Scan', 'dynamodb:UpdateItem']);
    for (const role of ['VendRole', 'RefreshRole']) expect(actionsOf(role).filter((a) => a.startsWith('secretsmanager:'))).toEqual(['secretsmanager:GetSecretValue']);
    expect(actionsOf('RotateRole').filter((a) => a.startsWith('dynamodb:')).sort()).toEqual(['dynamodb:BatchGetItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem']);
  });

  it('rotates the clients marked for rotation with the rotate function, least privilege', () => {
    const schedules = ofType(regional, 'AWS::SecretsManager::RotationSchedule');
    expect(schedules).toHaveLength(1);
    const [[, schedule] = []] = schedules;
    expect(props(schedule)).toMatchObject({
      SecretId: { Ref: 'ClientSecretordersm2m' },
      RotationLambdaARN: { 'Fn::GetAtt': ['RotateLambdaFunction', 'Arn'] },
      RotationRules: { ScheduleExpression: 'rate(30 days)' },
    });
    expect(props(regional.template.Resources.RotateLambdaPermissionSecretsManager)).toMatchObject({ Principal: 'secretsmanager.amazonaws.com' });
    const rotateStatements = (props(regional.template.Resources.RotateRole).Policies as Array<{ PolicyDocument: { Statement: Array<{ Sid: string; Resource: unknown }> } }>)[0]!.PolicyDocument.Statement;
    // the rotation actions only on the rotating secret, not on the rotator's own
    expect(rotateStatements.find((st) => st.Sid === 'RotateClientSecrets')?.Resource).toEqual([{ Ref: 'ClientSecretordersm2m' }]);
    // the vend role cannot rotate anything
    const vendActions = JSON.stringify(props(regional.template.Resources.VendRole).Policies);
    expect(vendActions).not.toContain('PutSecretValue');
    expect(vendActions).not.toContain('UpdateSecretVersionStage');
  });

  // --- who can read what (issue 10) ---------------------------------------------------------
  type Statement = { Sid?: string; Effect: string; Action: string | string[]; Resource?: unknown; Condition?: Record<string, Record<string, unknown>> };
  const asList = <T,>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const roleStatements = (p: Packaged, roleId: string): Statement[] =>
    (props(p.template.Resources[roleId]).Policies as Array<{ PolicyDocument: { Statement: Statement[] } }>).flatMap((x) => x.PolicyDocument.Statement);
  const secretPolicy = (p: Packaged, secretId: string): Statement[] => {
    const policies = ofType(p, 'AWS::SecretsManager::ResourcePolicy').filter(([, r]) => isDeepStrictEqual(props(r).SecretId, { Ref: secretId }));
    expect([secretId, policies.length]).toEqual([secretId, 1]);
    return props(policies[0]![1]).ResourcePolicy.Statement as Statement[];
  };
  /** The principals a secret's resource policy lets read it (those its GetSecretValue deny exempts). */
  const readersOf = (p: Packaged, secretId: string): unknown[] => {
    const deny = secretPolicy(p, secretId).filter((s) => s.Effect === 'Deny' && asList(s.Action).includes('secretsmanager:GetSecretValue'));
    expect(deny).toHaveLength(1);
    expect(deny[0]).toMatchObject({ Principal: '*', Resource: '*' });
    return asList(deny[0]!.Condition?.ArnNotEquals?.['aws:PrincipalArn']);
  };
  const role = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
  /** The secrets a role's own policy lets it read. */
  const readableBy = (p: Packaged, roleId: string): unknown[] =>
    roleStatements(p, roleId)
      .filter((s) => s.Effect === 'Allow' && asList(s.Action).includes('secretsmanager:GetSecretValue'))
      .flatMap((s) => asList(s.Resource));
  const keyStatements = (p: Packaged): Statement[] => props(p.template.Resources.TokenVendorKey).KeyPolicy.Statement as Statement[];
  const roleArn = (stage: string, fn: string) => ({ 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/token-vendor-${stage}-\${AWS::Region}-${fn}` });

  it('puts a resource policy on every client secret it creates, denying only (administrators keep the policy itself)', () => {
    for (const p of [regional, privateApi]) {
      const secrets = ofType(p, 'AWS::SecretsManager::Secret').map(([id]) => id);
      expect(secrets.length).toBe(2);
      for (const id of secrets) {
        const statements = secretPolicy(p, id);
        expect(statements.map((s) => s.Effect)).toEqual(statements.map(() => 'Deny'));
        const actions = statements.flatMap((s) => asList(s.Action));
        expect(actions).toContain('secretsmanager:GetSecretValue');
        expect(actions).not.toContain('secretsmanager:PutResourcePolicy');
        expect(actions).not.toContain('secretsmanager:DeleteResourcePolicy');
        expect(actions.filter((a) => a.includes('*'))).toEqual([]);
      }
    }
  });

  it('lets vend and refresh read the clients they vend for, never the management client; rotate reads both', () => {
    // orders-m2m is vended and rotates; auth0-rotator is only its rotation.managementClient
    expect(readersOf(regional, 'ClientSecretordersm2m')).toEqual([role('VendRole'), role('RefreshRole'), role('RotateRole')]);
    expect(readersOf(regional, 'ClientSecretauth0rotator')).toEqual([role('RotateRole')]);
    for (const id of ['VendRole', 'RefreshRole']) expect([id, readableBy(regional, id)]).toEqual([id, [{ Ref: 'ClientSecretordersm2m' }]]);
    expect(readableBy(regional, 'RotateRole')).toEqual(expect.arrayContaining([{ Ref: 'ClientSecretauth0rotator' }, { Ref: 'ClientSecretordersm2m' }]));
    // only rotation moves a secret's version stages
    const stageDeny = (id: string) => secretPolicy(regional, id).find((s) => asList(s.Action).includes('secretsmanager:UpdateSecretVersionStage'));
    expect(stageDeny('ClientSecretordersm2m')?.Condition).toEqual({ ArnNotEquals: { 'aws:PrincipalArn': [role('RotateRole')] } });
    expect(stageDeny('ClientSecretauth0rotator')?.Condition).toBeUndefined();
  });

  it('adds the break-glass role, when given, to every secret\'s readers and to the key', () => {
    expect(readersOf(privateApi, 'ClientSecretordersm2m')).toEqual([role('VendRole'), role('RefreshRole'), role('RotateRole'), BREAK_GLASS]);
    expect(readersOf(privateApi, 'ClientSecretauth0rotator')).toEqual([role('RotateRole'), BREAK_GLASS]);
    expect(JSON.stringify(keyStatements(regional))).not.toContain('break-glass');
    const breakGlass = keyStatements(privateApi).find((s) => s.Sid === 'BreakGlassReadsAndWritesSecrets');
    expect(breakGlass?.Condition?.ArnEquals).toEqual({ 'aws:PrincipalArn': BREAK_GLASS });
  });

  it('keeps the key\'s administration with the account and its use with the function roles, bound by encryption context', () => {
    const statements = keyStatements(regional);
    const root = { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } };
    // nobody gets kms:* any more
    expect(statements.flatMap((s) => asList(s.Action))).not.toContain('kms:*');
    const admin = statements.find((s) => s.Sid === 'AccountAdministersTheKey');
    expect(admin).toMatchObject({ Effect: 'Allow', Principal: root, Resource: '*' });
    expect(asList(admin!.Action).sort()).toEqual(
      ['kms:Create*', 'kms:Describe*', 'kms:Enable*', 'kms:List*', 'kms:Put*', 'kms:Update*', 'kms:Revoke*', 'kms:Disable*', 'kms:Get*', 'kms:Delete*', 'kms:ScheduleKeyDeletion', 'kms:CancelKeyDeletion', 'kms:TagResource', 'kms:UntagResource'].sort(),
    );
    expect(admin!.Condition).toBeUndefined();
    // the administration statement grants no use of the key
    expect(asList(admin!.Action).filter((a) => /Decrypt|Encrypt|GenerateDataKey/.test(a))).toEqual([]);
    // sealing: the three roles, the sealer's own context (functions/adapters/kmsTokenSealer.ts)
    const seal = statements.find((s) => s.Sid === 'FunctionsSealTokens');
    expect(seal?.Condition).toEqual({
      ArnEquals: { 'aws:PrincipalArn': [roleArn('citest', 'vend'), roleArn('citest', 'refresh'), roleArn('citest', 'rotate')] },
      StringEquals: { 'kms:EncryptionContext:purpose': 'token-vendor-token-seal', 'kms:EncryptionContext:table': props(regional.template.Resources.TokenTable).TableName },
    });
    // the role names the key policy uses are the roles' own
    for (const fn of ['vend', 'refresh', 'rotate']) {
      const roleId = `${fn[0]!.toUpperCase()}${fn.slice(1)}Role`;
      expect(props(regional.template.Resources[roleId]).RoleName).toEqual({ 'Fn::Sub': `token-vendor-citest-\${AWS::Region}-${fn}` });
    }
    // decrypting a secret: vend and refresh only their clients' secrets, rotate the rotating and management ones
    const secretArn = (name: string) => ({ 'Fn::Sub': `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:token-vendor/${name}-??????` });
    const viaSecretsManager = { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' };
    expect(statements.find((s) => s.Sid === 'VendAndRefreshReadTheirClientsSecrets')?.Condition).toEqual({
      ArnEquals: { 'aws:PrincipalArn': [roleArn('citest', 'vend'), roleArn('citest', 'refresh')] },
      StringEquals: { 'kms:ViaService': viaSecretsManager },
      StringLike: { 'kms:EncryptionContext:SecretARN': [secretArn('orders-m2m')] },
    });
    expect(statements.find((s) => s.Sid === 'RotateReadsAndWritesTheRotatingSecrets')?.Condition).toEqual({
      ArnEquals: { 'aws:PrincipalArn': roleArn('citest', 'rotate') },
      StringEquals: { 'kms:ViaService': viaSecretsManager },
      StringLike: { 'kms:EncryptionContext:SecretARN': [secretArn('orders-m2m'), secretArn('auth0-rotator')] },
    });
    // every statement that allows a decrypt names roles by ARN, or goes through DynamoDB for this table only
    for (const s of statements.filter((x) => asList(x.Action).some((a) => a.startsWith('kms:Decrypt')))) {
      const boundToRoles = s.Condition?.ArnEquals?.['aws:PrincipalArn'] !== undefined;
      const tableOnly = s.Condition?.StringEquals?.['kms:EncryptionContext:aws:dynamodb:tableName'] === 'token-vendor-citest';
      expect([s.Sid, boundToRoles || tableOnly]).toEqual([s.Sid, true]);
    }
    // the account may encrypt a secret value (put-secret-value), never decrypt one
    expect(statements.find((s) => s.Sid === 'AccountWritesSecretValues')?.Action).toBe('kms:GenerateDataKey');
  });

  it('reserves concurrency for vend only when the parameter is given', () => {
    expect(props(regional.template.Resources.VendLambdaFunction).ReservedConcurrentExecutions).toBeUndefined();
    expect(props(privateApi.template.Resources.VendLambdaFunction).ReservedConcurrentExecutions).toBe(25);
  });

  it('runs the refresher on a schedule, one pass at a time', () => {
    const rules = ofType(regional, 'AWS::Events::Rule');
    expect(rules.map(([, r]) => props(r).ScheduleExpression)).toEqual(['rate(1 minute)']);
    expect(props(regional.template.Resources.RefreshLambdaFunction).ReservedConcurrentExecutions).toBe(1);
  });

  it('creates the client secrets without a value', () => {
    const secrets = ofType(regional, 'AWS::SecretsManager::Secret');
    expect(secrets.map(([, s]) => props(s).Name).sort()).toEqual(['token-vendor/auth0-rotator', 'token-vendor/orders-m2m']);
    for (const [, s] of secrets) {
      expect(props(s)).not.toHaveProperty('SecretString');
      expect(props(s)).not.toHaveProperty('GenerateSecretString');
    }
  });

  it('keeps logs for the configured retention', () => {
    const groups = ofType(regional, 'AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThanOrEqual(1);
    for (const [, g] of groups) expect(props(g).RetentionInDays).toBe(90);
  });

  it('alarms on IdP errors, 5xx, throttles and lease timeouts, and has a dashboard', () => {
    const metrics = ofType(regional, 'AWS::CloudWatch::Alarm').map(([, a]) => props(a).MetricName);
    expect(metrics).toEqual(expect.arrayContaining(['IdpError', '5XXError', 'Throttles', 'LeaseTimeout']));
    expect(ofType(regional, 'AWS::CloudWatch::Dashboard')).toHaveLength(1);
  });

  it('turns Lambda active tracing on with the tracing parameter, and the roles may then send traces', () => {
    const tracingOf = (p: Packaged) => ofType(p, 'AWS::Lambda::Function').map(([id, f]) => [id, props(f).TracingConfig]);
    const policiesOf = (p: Packaged) => ['VendRole', 'RefreshRole', 'RotateRole'].map((id) => [id, props(p.template.Resources[id]).ManagedPolicyArns]);
    const xray = { 'Fn::Sub': 'arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess' };
    // default (off): no TracingConfig, no X-Ray permission
    expect(tracingOf(regional)).toEqual([['VendLambdaFunction', undefined], ['RefreshLambdaFunction', undefined], ['RotateLambdaFunction', undefined]]);
    expect(policiesOf(regional)).toEqual([['VendRole', []], ['RefreshRole', []], ['RotateRole', []]]);
    // on: every function traced, every role allowed to send its segments
    expect(tracingOf(privateApi)).toEqual([['VendLambdaFunction', { Mode: 'Active' }], ['RefreshLambdaFunction', { Mode: 'Active' }], ['RotateLambdaFunction', { Mode: 'Active' }]]);
    expect(policiesOf(privateApi)).toEqual([['VendRole', [xray]], ['RefreshRole', [xray]], ['RotateRole', [xray]]]);
  });

  it('ships each function as its own bundle, without node_modules', () => {
    const functions = ofType(regional, 'AWS::Lambda::Function');
    for (const [id, f] of functions) {
      const name = id.replace(/LambdaFunction$/, '').toLowerCase();
      const key = props(f).Code.S3Key as string;
      expect(key.endsWith(`/${name}.zip`)).toBe(true);
      const entries = zipEntries(join(regional.dir, `${name}.zip`)).sort();
      // The entry, its grants and package.json, and the chunks it loads with import() on first
      // use (esbuild code splitting, scripts/esbuildOptions.mjs): nothing of another function's,
      // no node_modules.
      const chunks = entries.filter((e) => e.startsWith(`dist/${name}/chunks/`));
      expect(entries.filter((e) => !chunks.includes(e))).toEqual([`dist/${name}/grants.json`, `dist/${name}/index.js`, `dist/${name}/index.js.map`, `dist/${name}/package.json`]);
      expect(chunks.length).toBeGreaterThan(0);
      for (const chunk of chunks) expect(chunk).toMatch(new RegExp(`^dist/${name}/chunks/[\\w-]+\\.js(\\.map)?$`));
    }
  });
});

describe('packaging with a broken grants file', () => {
  it('fails, naming the bad field', () => {
    const result = runPackage('citestbroken', join(regional.dir, 'broken'), { grantsFile: 'test/fixtures/grants-broken.json' });
    expect(result.status).not.toBe(0);
    expect(result.output).toContain('grants[0].scopes[1]');
  }, 120_000);
});

describe('packaging an environment that makes a promise impossible', () => {
  it('fails, naming the variables: a deadline without room for one retry', () => {
    // This service, with serverless.yml deploying IDP_DEADLINE_MS 5000 beside IDP_TIMEOUT_MS 2000:
    // a copy of serverless.yml in a directory of its own, everything else linked.
    const dir = mkdtempSync(join(tmpdir(), 'package-badtimings-'));
    for (const entry of ['infra', 'functions', 'scripts', 'node_modules', 'grants.json', 'package.json']) symlinkSync(resolve(entry), join(dir, entry));
    const yml = readFileSync('serverless.yml', 'utf8');
    const bad = yml.replace(/^(\s+IDP_DEADLINE_MS:) '\d+'$/m, "$1 '5000'");
    expect(bad).not.toBe(yml);
    writeFileSync(join(dir, 'serverless.yml'), bad);
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_ENDPOINT_URL']) delete env[key];
    const result = spawnSync(process.execPath, [resolve('node_modules/osls/bin/serverless.js'), 'package', '--stage', 'citestbadtimings', '--package', join(dir, 'out')], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 });
    const output = `${result.stdout}\n${result.stderr}`;
    expect(result.status).not.toBe(0);
    expect(output).toContain('IDP_DEADLINE_MS: must leave room for one retry: at least 2 × 2 × IDP_TIMEOUT_MS + RETRY_BASE_MS (8100), got 5000');
  }, 120_000);
});

describe('packaging with a bad tracing parameter', () => {
  it('fails, naming the parameter', () => {
    const result = runPackage('citestbadtracing', join(regional.dir, 'badtracing'), { tracing: 'yes' });
    expect(result.status).not.toBe(0);
    expect(result.output).toContain('param tracing: "yes" is not true or false');
  }, 120_000);
});

describe('packaging with a bad break-glass role', () => {
  it('fails, naming the parameter', () => {
    const result = runPackage('citestbadbreakglass', join(regional.dir, 'badbreakglass'), { breakGlassRoleArn: 'arn:aws:iam::111122223333:user/alice' });
    expect(result.status).not.toBe(0);
    expect(result.output).toContain('param breakGlassRoleArn: "arn:aws:iam::111122223333:user/alice" is not an IAM role ARN');
  }, 120_000);
});

describe('the API stage and its access log (issue 10)', () => {
  // Packaged a third time with this stack setting API Gateway's account-wide CloudWatch role.
  let withRole: Packaged;
  beforeAll(() => {
    withRole = packageService('citestapilog', { apiGatewayCloudWatchRole: 'true' });
  }, 300_000);

  const resourcesOf = (p: Packaged, type: string) => Object.entries(p.template.Resources).filter(([, r]) => r.Type === type);
  const propsOf = (r: CfnResource | undefined): Record<string, any> => (r?.Properties ?? {}) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const stageOf = (p: Packaged) => {
    const stages = resourcesOf(p, 'AWS::ApiGateway::Stage');
    expect(stages.map(([id]) => id)).toEqual(['ApiGatewayStage']);
    return stages[0]![1];
  };
  /** The value the apiGatewayCloudWatchRole condition compares with 'true'. */
  const cloudWatchRoleCondition = (p: Packaged) =>
    (p.template as unknown as { Conditions: { SetsApiGatewayCloudWatchRole: { 'Fn::Equals': [{ 'Fn::Join': [string, string[]] }, string] } } }).Conditions.SetsApiGatewayCloudWatchRole['Fn::Equals'];

  it('is a Stage resource of the stack, on osls\'s deployment, which no longer makes the stage itself', () => {
    for (const [p, stageName] of [[regional, 'citest'], [privateApi, 'citestprivate'], [withRole, 'citestapilog']] as const) {
      const deployments = resourcesOf(p, 'AWS::ApiGateway::Deployment');
      expect(deployments).toHaveLength(1);
      const [deploymentId, deployment] = deployments[0]!;
      expect(deploymentId).toMatch(/^ApiGatewayDeployment\d+$/);
      expect(propsOf(deployment)).not.toHaveProperty('StageName');
      expect(propsOf(deployment)).not.toHaveProperty('StageDescription');
      expect(propsOf(stageOf(p))).toMatchObject({ RestApiId: { Ref: 'ApiGatewayRestApi' }, DeploymentId: { Ref: deploymentId }, StageName: stageName, TracingEnabled: true });
    }
  });

  it('keeps the stage name the alarms, the dashboard and the endpoint output use', () => {
    const stageName = propsOf(stageOf(regional)).StageName as string;
    const apiName = propsOf(regional.template.Resources.ApiGatewayRestApi).Name as string;
    const dimensions = Object.fromEntries((propsOf(regional.template.Resources.Api5xxAlarm).Dimensions as Array<{ Name: string; Value: string }>).map((d) => [d.Name, d.Value]));
    expect(dimensions).toEqual({ ApiName: apiName, Stage: stageName });
    const [[, dashboard] = []] = resourcesOf(regional, 'AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(propsOf(dashboard).DashboardBody);
    expect(body).toContain(`\\"AWS/ApiGateway\\", \\"Count\\", \\"ApiName\\", \\"${apiName}\\", \\"Stage\\", \\"${stageName}\\"`);
    expect(JSON.stringify(regional.template.Outputs?.ServiceEndpoint)).toContain(`"/${stageName}"`);
  });

  it('writes a JSON access log line per request: request id, caller ARN, status, latency, error', () => {
    const log = propsOf(stageOf(regional)).AccessLogSetting as { DestinationArn: unknown; Format: string };
    // the log group's ARN without the ":*" that its Arn attribute ends with
    expect(log.DestinationArn).toEqual({ 'Fn::Sub': 'arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${ApiAccessLogGroup}' });
    // one line, and valid JSON once API Gateway has put a value (or "-") in place of each variable
    expect(log.Format).not.toMatch(/[\r\n]/);
    const line = JSON.parse(log.Format.replace(/\$context\.[\w.]+/g, (v) => `<${v}>`)) as Record<string, string>;
    // every field is exactly one $context variable
    for (const [field, value] of Object.entries(line)) expect([field, value]).toEqual([field, expect.stringMatching(/^<\$context\.[\w.]+>$/)]);
    expect(line).toMatchObject({
      requestId: '<$context.requestId>',
      extendedRequestId: '<$context.extendedRequestId>',
      callerArn: '<$context.identity.userArn>',
      status: '<$context.status>',
      responseLatency: '<$context.responseLatency>',
      integrationLatency: '<$context.integrationLatency>',
      ip: '<$context.identity.sourceIp>',
      httpMethod: '<$context.httpMethod>',
      resourcePath: '<$context.resourcePath>',
      requestTime: '<$context.requestTime>',
      errorMessage: '<$context.error.message>',
      errorType: '<$context.error.responseType>',
    });
  });

  it('keeps the access log in its own log group, for the configured retention, not one osls deletes after a deploy', () => {
    const group = propsOf(regional.template.Resources.ApiAccessLogGroup);
    expect(regional.template.Resources.ApiAccessLogGroup?.Type).toBe('AWS::Logs::LogGroup');
    expect(group.LogGroupName).toBe('/aws/apigateway/token-vendor-citest/access');
    expect(group.RetentionInDays).toBe(props(regional.template.Resources.VendLogGroup).RetentionInDays);
    // osls's post-deploy stage calls (update-stage.js) delete /aws/api-gateway/<service>-<stage>
    // unless provider.logs.restApi is set; they run only when tracing, logs, tags or metrics are
    // configured in provider: none is, so osls makes no stage calls after a deploy.
    expect(group.LogGroupName).not.toBe('/aws/api-gateway/token-vendor-citest');
    const provider = (JSON.parse(readFileSync(join(regional.dir, 'serverless-state.json'), 'utf8')) as { service: { provider: Record<string, any> } }).service.provider; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(provider.tracing?.apiGateway).toBeUndefined();
    expect(provider.logs?.restApi).toBeUndefined();
    expect(provider.apiGateway?.metrics).toBeUndefined();
    expect([provider.tags, provider.stackTags]).toEqual([undefined, undefined]);
  });

  it('sets API Gateway\'s account-wide CloudWatch role only when asked, and the stage waits for it', () => {
    expect(cloudWatchRoleCondition(regional)).toEqual([{ 'Fn::Join': ['', ['false']] }, 'true']);
    expect(cloudWatchRoleCondition(privateApi)).toEqual([{ 'Fn::Join': ['', ['false']] }, 'true']);
    expect(cloudWatchRoleCondition(withRole)).toEqual([{ 'Fn::Join': ['', ['true']] }, 'true']);
    for (const p of [regional, withRole]) {
      const account = p.template.Resources.ApiGatewayAccountSettings as CfnResource & { Condition?: string; UpdateReplacePolicy?: string };
      const role = p.template.Resources.ApiGatewayCloudWatchRole as CfnResource & { Condition?: string };
      expect(account).toMatchObject({ Type: 'AWS::ApiGateway::Account', Condition: 'SetsApiGatewayCloudWatchRole', DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
      expect(propsOf(account).CloudWatchRoleArn).toEqual({ 'Fn::GetAtt': ['ApiGatewayCloudWatchRole', 'Arn'] });
      expect(role).toMatchObject({ Type: 'AWS::IAM::Role', Condition: 'SetsApiGatewayCloudWatchRole', DeletionPolicy: 'Retain' });
      expect(propsOf(role).AssumeRolePolicyDocument.Statement).toEqual([{ Effect: 'Allow', Principal: { Service: 'apigateway.amazonaws.com' }, Action: 'sts:AssumeRole' }]);
      expect(propsOf(role).ManagedPolicyArns).toEqual([{ 'Fn::Sub': 'arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs' }]);
      expect(propsOf(role)).not.toHaveProperty('Policies');
      // the stage is created (and its access log set) after the account settings, when this stack sets them
      expect(stageOf(p).DependsOn).toEqual(['ApiGatewayCloudWatchRoleReady']);
      expect((p.template.Resources.ApiGatewayCloudWatchRoleReady as CfnResource & { Metadata?: unknown }).Metadata).toEqual({
        AccountSettings: { 'Fn::If': ['SetsApiGatewayCloudWatchRole', { Ref: 'ApiGatewayAccountSettings' }, 'set outside this stack'] },
      });
    }
  });

  it('passes cfn-lint with the CloudWatch role set by the stack', () => {
    const lint = cfnLint(withRole.templatePath);
    expect(lint.output).toBe('');
    expect(lint.status).toBe(0);
  });

  it('fails packaging on an apiGatewayCloudWatchRole that is not true or false, naming the parameter', () => {
    const result = runPackage('citestbadcwrole', join(withRole.dir, 'badcwrole'), { apiGatewayCloudWatchRole: 'yes' });
    expect(result.status).not.toBe(0);
    expect(result.output).toContain('param apiGatewayCloudWatchRole: "yes" is not true or false');
  }, 120_000);
});

describe('osls invoke local, with the sample events, against the local stack', () => {
  let stack: TestStack;
  const stage = `inv${Date.now().toString(36)}`;
  beforeAll(async () => {
    // marketing-batch has a key (it proves who it is) but no grant.
    stack = await startTestStack({ callers: ['arn:aws:sts::111122223333:assumed-role/marketing-batch/i-0fedcba9876543210'] });
    // The deployed function's table is token-vendor-<stage> and its seal key alias/token-vendor-<stage>.
    await createTokenTable(stack.dynamodb, `token-vendor-${stage}`);
    await createSealKey(stack.kms, `alias/token-vendor-${stage}`);
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    rmSync(eventsDir, { recursive: true, force: true });
  });
  const eventsDir = mkdtempSync(join(tmpdir(), 'invoke-'));

  // Asynchronous: the local Auth0 tenant runs in this process and must keep answering.
  const invoke = async (event: string, fn = 'vend'): Promise<unknown> => {
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', POWERTOOLS_LOG_LEVEL: 'WARN' };
    // A sample file cannot hold a proof (60 s): a fresh one is added, as npm run invoke:local does.
    const signed = withFreshProof(JSON.parse(readFileSync(event, 'utf8')), (arn, audience, scope) => (arn === undefined ? undefined : proofFor(arn, audience, scope)), REPORTING_ROLE_SESSION);
    const payload = join(eventsDir, `${event.replace(/\W/g, '_')}.json`);
    writeFileSync(payload, JSON.stringify(signed));
    const args = ['node_modules/osls/bin/serverless.js', 'invoke', 'local', '-f', fn, '--stage', stage, '-p', payload];
    for (const key of ['GRANTS_FILE', 'AWS_ENDPOINT_URL', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'STS_ENDPOINT', 'PROOF_SERVER_ID'] as const) {
      args.push('-e', `${key}=${stack.env[key]}`);
    }
    const { stdout } = await execFileAsync(process.execPath, args, { env, encoding: 'utf8', timeout: 120_000 });
    // invoke local prints the handler's result as the last JSON document on stdout.
    const start = stdout.lastIndexOf('\n{\n');
    return JSON.parse(stdout.slice(start + 1));
  };

  // osls prints a JSON body already parsed.
  const body = (res: { body: unknown }): Record<string, unknown> => (typeof res.body === 'string' ? JSON.parse(res.body) : res.body) as Record<string, unknown>;

  it('has a sample event for every entry point', () => {
    expect(readdirSync('events').sort()).toEqual(['api-assumed-role.json', 'api-base64-body.json', 'api-denied-caller.json', 'direct-invoke.json', 'rotation-create-secret.json', 'scheduled-refresh.json']);
  });

  it('direct-invoke.json: a scheduled job gets a token', async () => {
    expect(await invoke('events/direct-invoke.json')).toMatchObject({ token_type: 'Bearer', scope: 'read:orders', expires_in: expect.any(Number) });
  });

  it('api-assumed-role.json: an assumed-role caller gets 200 with the token', async () => {
    const res = (await invoke('events/api-assumed-role.json')) as { statusCode: number; body: unknown };
    expect(res.statusCode).toBe(200);
    expect(body(res)).toMatchObject({ token_type: 'Bearer', scope: 'read:orders' });
  });

  it('api-base64-body.json: a base64 body is decoded', async () => {
    expect(((await invoke('events/api-base64-body.json')) as { statusCode: number }).statusCode).toBe(200);
  });

  it('api-denied-caller.json: a caller without a grant gets 403 access_denied', async () => {
    const res = (await invoke('events/api-denied-caller.json')) as { statusCode: number; body: unknown };
    expect(res.statusCode).toBe(403);
    expect(body(res).error).toBe('access_denied');
  });

  it('each separate invocation reused the table: one IdP call per distinct scope set', () => {
    // read:orders (three events) and, for the base64 event that names no scope, read:orders write:orders
    expect(stack.tenant.tokenRequests()).toBe(2);
  });

  it('scheduled-refresh.json: the refresher finds the two recently used tokens fresh and leaves them', async () => {
    expect(await invoke('events/scheduled-refresh.json', 'refresh')).toMatchObject({ considered: 2, fresh: 2, refreshed: 0, failed: 0 });
    expect(stack.tenant.tokenRequests()).toBe(2);
  });
});
