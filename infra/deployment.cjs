// Deployment values that depend on the stage parameters and on grants.json, computed in one
// reviewed place for serverless.yml (`${file(infra/deployment.cjs):<key>}`).
//
// - validates grants.json exactly as the function does at cold start (a bad grants file fails
//   packaging with a message naming the field);
// - validates the environment the functions are deployed with, also exactly as at cold start (a
//   setting that makes a promise impossible, such as a deadline without room for one retry, fails
//   packaging with a message naming the variables);
// - declares one Secrets Manager secret per client in grants.json, created without a value;
// - builds the API's resource policy from the allowed accounts / organization / VPC endpoint;
// - turns Lambda active tracing (X-Ray) on or off, with the roles' permission to send traces;
// - names the functions' roles, and builds who may read which secret (each secret's resource
//   policy, the roles' own policies, the KMS key policy) from who needs it: vend and refresh the
//   clients they vend for, rotate the rotating clients and their management clients, plus an
//   optional break-glass role;
// - reserves concurrency for vend when the stage parameter asks for it.
'use strict';

const { execFileSync } = require('node:child_process');
const { readFileSync } = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

/** Validate with the function's own validator (TypeScript, run through tsx), or throw its message. */
function validatedGrants(grantsFile) {
  try {
    execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/validate-grants.ts'), grantsFile], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
  } catch (error) {
    const message = String(error.stderr || error.message).trim();
    throw new Error(`grants file rejected: ${message}`);
  }
  return JSON.parse(readFileSync(grantsFile, 'utf8'));
}

/**
 * Check the environment serverless.yml deploys (`provider.environment`, with the grants file being
 * deployed) with the function's own `loadConfig` (functions/config.ts, loaded through tsx): one
 * rule, so what would fail a cold start fails packaging, with the same message.
 */
function checkEnvironment(environment, grantsFile) {
  const { loadConfig } = require('tsx/cjs/api').require(path.join(root, 'functions/config.ts'), module.filename);
  // Lambda gives the function strings; a value that YAML or a parameter made a number is one too.
  const env = Object.fromEntries(Object.entries(environment ?? {}).map(([name, value]) => [name, value == null ? undefined : String(value)]));
  try {
    loadConfig({ ...env, GRANTS_FILE: grantsFile }, root);
  } catch (error) {
    throw new Error(`environment rejected: ${error.message}`);
  }
}

/** CloudFormation logical id for a client's secret: alphanumeric, stable per client name. */
function secretLogicalId(clientName) {
  return `ClientSecret${clientName.replace(/[^A-Za-z0-9]/g, '')}`;
}

function list(value) {
  return String(value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

module.exports = async ({ resolveVariable }) => {
  const param = async (name) => {
    const value = await resolveVariable(`param:${name}, ''`);
    return value == null ? '' : String(value);
  };
  // Checked first: a typo fails at once, before grants.json is validated and anything is built.
  const tracingParam = (await param('tracing')) || 'false';
  if (tracingParam !== 'true' && tracingParam !== 'false') {
    throw new Error(`param tracing: "${tracingParam}" is not true or false`);
  }
  const lambdaTracing = tracingParam === 'true';
  const breakGlassRoleArn = await param('breakGlassRoleArn');
  if (breakGlassRoleArn !== '' && !/^arn:aws(-cn|-us-gov)?:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/.test(breakGlassRoleArn)) {
    throw new Error(`param breakGlassRoleArn: "${breakGlassRoleArn}" is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)`);
  }
  const vendReservedConcurrency = await param('vendReservedConcurrency');
  if (vendReservedConcurrency !== '' && !/^[1-9]\d{0,4}$/.test(vendReservedConcurrency)) {
    throw new Error(`param vendReservedConcurrency: "${vendReservedConcurrency}" is not a positive whole number (empty: unreserved)`);
  }

  // Each function's role has a fixed name, so the KMS key policy can name it without depending on
  // it (the roles' own policies name the key: a reference both ways would be a cycle).
  const stage = String(await resolveVariable('sls:stage'));
  const region = String(await resolveVariable('self:provider.region'));
  const roleNames = {};
  const roleArns = {};
  for (const fn of ['vend', 'refresh', 'rotate']) {
    const name = `token-vendor-${stage}-${region}-${fn}`;
    if (name.length > 64) throw new Error(`stage "${stage}": the role name ${name} is longer than IAM's 64 characters; use a shorter stage name`);
    roleNames[fn] = { 'Fn::Sub': `token-vendor-${stage}-\${AWS::Region}-${fn}` };
    roleArns[fn] = { 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/token-vendor-${stage}-\${AWS::Region}-${fn}` };
  }
  const breakGlass = breakGlassRoleArn === '' ? [] : [breakGlassRoleArn];

  const grantsFile = path.resolve(root, (await param('grantsFile')) || 'grants.json');
  const grants = validatedGrants(grantsFile);
  const environment = await resolveVariable('self:provider.environment');
  checkEnvironment(environment, grantsFile);

  const secrets = {};
  /** secret reference (Ref or ARN) per client name */
  const secretRefOf = new Map();
  const seenLogicalIds = new Map();
  for (const [name, client] of Object.entries(grants.clients)) {
    const logicalId = secretLogicalId(name);
    if (seenLogicalIds.has(logicalId)) {
      throw new Error(`grants file rejected: clients.${name}: name collides with clients.${seenLogicalIds.get(logicalId)} once reduced to a CloudFormation id`);
    }
    seenLogicalIds.set(logicalId, name);
    if (client.secretId.startsWith('arn:')) {
      // A secret managed elsewhere (another stack, another team): grant read on it, do not create it.
      secretRefOf.set(name, client.secretId);
      continue;
    }
    secretRefOf.set(name, { Ref: logicalId });
    secrets[logicalId] = {
      Type: 'AWS::SecretsManager::Secret',
      // Keep the credentials if the stack is deleted: Auth0 would still hold the client.
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: {
        Name: client.secretId,
        Description: `Auth0 client credentials {"client_id","client_secret"} for ${name} (${client.domain}). Set the value out of band; never in this template.`,
        KmsKeyId: { Ref: 'TokenVendorKey' },
        // No SecretString and no GenerateSecretString: the secret is created empty.
      },
    };
  }

  // Who reads which secret. vend and refresh: the clients some grant vends for. rotate: the clients
  // that rotate and the Management API clients they rotate with. A client used only as a
  // management client is read by rotate alone.
  const vended = new Set(grants.grants.map((g) => g.client));
  const rotating = new Set(Object.entries(grants.clients).filter(([, c]) => c.rotation !== undefined).map(([name]) => name));
  const management = new Set(Object.values(grants.clients).filter((c) => c.rotation !== undefined).map((c) => c.rotation.managementClient));
  const refsOf = (names) => [...secretRefOf.entries()].filter(([name]) => names.has(name)).map(([, ref]) => ref);
  // The ARN a secret's KMS encryption context carries (SecretARN): for the secrets created here,
  // their name and Secrets Manager's 6-character suffix (a Ref would make the key depend on them).
  const secretArnPatterns = (names) =>
    Object.entries(grants.clients)
      .filter(([name]) => names.has(name))
      .flatMap(([, c]) =>
        c.secretId.startsWith('arn:')
          ? [c.secretId, `${c.secretId}-??????`]
          : [{ 'Fn::Sub': `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${c.secretId}-??????` }],
      );
  // Never empty, so a statement stays valid (a name that matches nothing).
  const noSecret = (suffix) => [{ 'Fn::Sub': `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:token-vendor-no-${suffix}-*` }];
  const orNone = (list, suffix) => (list.length > 0 ? list : noSecret(suffix));

  // A resource policy on each secret created here: only the roles that need the value may read it
  // (whatever else IAM allows, e.g. AdministratorAccess or PowerUserAccess), and only rotation (or
  // the break-glass role) may move its version stages. Deny statements only: administrators keep
  // PutResourcePolicy / DeleteResourcePolicy, and setting a value (PutSecretValue) stays with IAM
  // (a writer cannot read back what it wrote).
  const rolesFor = (name) => {
    const readers = [];
    if (vended.has(name)) readers.push({ 'Fn::GetAtt': ['VendRole', 'Arn'] }, { 'Fn::GetAtt': ['RefreshRole', 'Arn'] });
    if (rotating.has(name) || management.has(name)) readers.push({ 'Fn::GetAtt': ['RotateRole', 'Arn'] });
    const stageMovers = rotating.has(name) ? [{ 'Fn::GetAtt': ['RotateRole', 'Arn'] }] : [];
    return { readers: [...readers, ...breakGlass], stageMovers: [...stageMovers, ...breakGlass] };
  };
  const denyAllBut = (sid, actions, principals) => ({
    Sid: sid,
    Effect: 'Deny',
    Principal: '*',
    Action: actions,
    Resource: '*',
    ...(principals.length > 0 ? { Condition: { ArnNotEquals: { 'aws:PrincipalArn': principals } } } : {}),
  });
  for (const [name, client] of Object.entries(grants.clients)) {
    if (client.secretId.startsWith('arn:')) continue;
    const logicalId = secretLogicalId(name);
    const { readers, stageMovers } = rolesFor(name);
    secrets[`${logicalId}Policy`] = {
      Type: 'AWS::SecretsManager::ResourcePolicy',
      Properties: {
        SecretId: { Ref: logicalId },
        BlockPublicPolicy: true,
        ResourcePolicy: {
          Version: '2012-10-17',
          Statement: [
            denyAllBut('OnlyTheVendorReads', ['secretsmanager:GetSecretValue'], readers),
            denyAllBut('OnlyRotationMovesVersions', ['secretsmanager:UpdateSecretVersionStage'], stageMovers),
          ],
        },
      },
    };
  }

  // The KMS key policy (infra/kms.yml): administration stays with the account; use only by the
  // function roles (and the break-glass role), each bound by the encryption context its caller sets.
  const tableName = String(environment.TOKEN_TABLE_NAME);
  const accountPrincipal = { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } };
  const allSecretPatterns = orNone(secretArnPatterns(new Set(Object.keys(grants.clients))), 'secret');
  const keyPolicy = {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'AccountAdministersTheKey',
        Effect: 'Allow',
        Principal: accountPrincipal,
        Action: [
          'kms:Create*', 'kms:Describe*', 'kms:Enable*', 'kms:List*', 'kms:Put*', 'kms:Update*', 'kms:Revoke*', 'kms:Disable*', 'kms:Get*', 'kms:Delete*',
          'kms:ScheduleKeyDeletion', 'kms:CancelKeyDeletion', 'kms:TagResource', 'kms:UntagResource',
        ],
        Resource: '*',
      },
      // functions/adapters/kmsTokenSealer.ts: data keys for sealing tokens, bound to its purpose and table.
      {
        Sid: 'FunctionsSealTokens',
        Effect: 'Allow',
        Principal: accountPrincipal,
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Resource: '*',
        Condition: {
          ArnEquals: { 'aws:PrincipalArn': [roleArns.vend, roleArns.refresh, roleArns.rotate, ...breakGlass] },
          StringEquals: { 'kms:EncryptionContext:purpose': 'token-vendor-token-seal', 'kms:EncryptionContext:table': tableName },
        },
      },
      {
        Sid: 'VendAndRefreshReadTheirClientsSecrets',
        Effect: 'Allow',
        Principal: accountPrincipal,
        Action: 'kms:Decrypt',
        Resource: '*',
        Condition: {
          ArnEquals: { 'aws:PrincipalArn': [roleArns.vend, roleArns.refresh] },
          StringEquals: { 'kms:ViaService': { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' } },
          StringLike: { 'kms:EncryptionContext:SecretARN': orNone(secretArnPatterns(vended), 'vended') },
        },
      },
      {
        Sid: 'RotateReadsAndWritesTheRotatingSecrets',
        Effect: 'Allow',
        Principal: accountPrincipal,
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
        Resource: '*',
        Condition: {
          ArnEquals: { 'aws:PrincipalArn': roleArns.rotate },
          StringEquals: { 'kms:ViaService': { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' } },
          StringLike: { 'kms:EncryptionContext:SecretARN': orNone(secretArnPatterns(new Set([...rotating, ...management])), 'rotation') },
        },
      },
      // Setting a client's credentials (put-secret-value) encrypts under the key: the account may
      // encrypt through Secrets Manager, never decrypt (reading stays with the roles above).
      {
        Sid: 'AccountWritesSecretValues',
        Effect: 'Allow',
        Principal: accountPrincipal,
        Action: 'kms:GenerateDataKey',
        Resource: '*',
        Condition: {
          StringEquals: { 'kms:ViaService': { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' }, 'kms:CallerAccount': { Ref: 'AWS::AccountId' } },
          StringLike: { 'kms:EncryptionContext:SecretARN': allSecretPatterns },
        },
      },
      // The table's encryption at rest, through DynamoDB only and for this table only: who may use
      // the table is decided by DynamoDB permissions (creating it, the ops commands), and what it
      // holds is sealed under the statement above, which this one does not open.
      {
        Sid: 'TableEncryptionThroughDynamoDb',
        Effect: 'Allow',
        Principal: accountPrincipal,
        Action: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*'],
        Resource: '*',
        Condition: {
          StringEquals: {
            'kms:ViaService': { 'Fn::Sub': 'dynamodb.${AWS::Region}.amazonaws.com' },
            'kms:CallerAccount': { Ref: 'AWS::AccountId' },
            'kms:EncryptionContext:aws:dynamodb:tableName': tableName,
          },
        },
      },
    ],
  };
  if (breakGlassRoleArn !== '') {
    keyPolicy.Statement.push({
      Sid: 'BreakGlassReadsAndWritesSecrets',
      Effect: 'Allow',
      Principal: accountPrincipal,
      Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
      Resource: '*',
      Condition: {
        ArnEquals: { 'aws:PrincipalArn': breakGlassRoleArn },
        StringEquals: { 'kms:ViaService': { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' } },
        StringLike: { 'kms:EncryptionContext:SecretARN': allSecretPatterns },
      },
    });
  }

  // Rotation: a schedule per client whose grants entry has `rotation`, all on the rotate function.
  const rotationSchedule = (await param('rotationSchedule')) || 'rate(30 days)';
  const rotation = { Resources: {} };
  const rotatableSecretArns = [];
  for (const [name, client] of Object.entries(grants.clients)) {
    if (client.rotation === undefined) continue;
    const secretRef = secretRefOf.get(name);
    rotatableSecretArns.push(secretRef);
    rotation.Resources[`RotationSchedule${secretLogicalId(name).replace(/^ClientSecret/, '')}`] = {
      Type: 'AWS::SecretsManager::RotationSchedule',
      DependsOn: ['RotateLambdaPermissionSecretsManager'],
      Properties: {
        SecretId: secretRef,
        RotationLambdaARN: { 'Fn::GetAtt': ['RotateLambdaFunction', 'Arn'] },
        RotationRules: { ScheduleExpression: rotationSchedule },
        // The first rotation is started by ops (npm run ops -- rotate) once the secret has a value.
        RotateImmediatelyOnUpdate: false,
      },
    };
  }
  if (rotatableSecretArns.length > 0) {
    rotation.Resources.RotateLambdaPermissionSecretsManager = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunction',
        FunctionName: { 'Fn::GetAtt': ['RotateLambdaFunction', 'Arn'] },
        Principal: 'secretsmanager.amazonaws.com',
        SourceAccount: { Ref: 'AWS::AccountId' },
      },
    };
  }

  const accounts = list(await param('allowedAccountIds'));
  const organizationId = await param('organizationId');
  const vpcEndpointId = await param('vpcEndpointId');
  for (const account of accounts) {
    if (!/^\d{12}$/.test(account)) throw new Error(`param allowedAccountIds: "${account}" is not a 12-digit AWS account id`);
  }
  if (organizationId !== '' && !/^o-[a-z0-9]{10,32}$/.test(organizationId)) {
    throw new Error(`param organizationId: "${organizationId}" is not an AWS Organizations id (o-...)`);
  }
  if (vpcEndpointId !== '' && !/^vpce-[0-9a-f]{8,17}$/.test(vpcEndpointId)) {
    throw new Error(`param vpcEndpointId: "${vpcEndpointId}" is not a VPC endpoint id (vpce-...)`);
  }

  // Without an explicit list, only the deploying account may call.
  const principalAccounts = accounts.length > 0 ? accounts : [{ Ref: 'AWS::AccountId' }];
  const accountRoot = (account) => (typeof account === 'string' ? { 'Fn::Sub': `arn:\${AWS::Partition}:iam::${account}:root` } : { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' });
  const allowed = { StringNotEquals: { 'aws:PrincipalAccount': principalAccounts } };
  if (organizationId !== '') allowed.StringNotEquals['aws:PrincipalOrgID'] = organizationId;
  const resourcePolicy = [
    // The accounts' roots, not "*": the API lets an account in, and the caller's own IAM policy
    // must still allow execute-api:Invoke on the method (AWS_IAM checks both).
    { Effect: 'Allow', Principal: { AWS: principalAccounts.map(accountRoot) }, Action: 'execute-api:Invoke', Resource: 'execute-api:/*' },
    // Conditions in one statement are ANDed: denied unless the caller's account is listed OR it
    // belongs to the organization.
    { Effect: 'Deny', Principal: '*', Action: 'execute-api:Invoke', Resource: 'execute-api:/*', Condition: allowed },
  ];
  if (organizationId !== '') {
    // An organization's accounts cannot be listed as principals: the org id condition lets them in.
    resourcePolicy.splice(1, 0, {
      Effect: 'Allow',
      Principal: '*',
      Action: 'execute-api:Invoke',
      Resource: 'execute-api:/*',
      Condition: { StringEquals: { 'aws:PrincipalOrgID': organizationId } },
    });
  }
  if (vpcEndpointId !== '') {
    resourcePolicy.push({
      Effect: 'Deny',
      Principal: '*',
      Action: 'execute-api:Invoke',
      Resource: 'execute-api:/*',
      Condition: { StringNotEquals: { 'aws:SourceVpce': vpcEndpointId } },
    });
  }

  return {
    grantsFile,
    secretResources: { Resources: secrets },
    // vend and refresh read only the clients they vend for; rotate reads the management clients
    // (and, in its rotation statement, the rotating ones).
    vendedSecretArns: orNone(refsOf(vended), 'vended'),
    managementSecretArns: orNone(refsOf(management), 'management'),
    roleNames,
    keyPolicy,
    tableName,
    // Reserved concurrency for vend (the vendReservedConcurrency stage parameter), as an extension
    // of the function osls generates; none when the parameter is empty.
    functionExtensions:
      vendReservedConcurrency === '' ? {} : { VendLambdaFunction: { Properties: { ReservedConcurrentExecutions: Number(vendReservedConcurrency) } } },
    rotationResources: rotation,
    // Never empty, so the role's statement stays valid when no client rotates (a name that matches nothing).
    rotatableSecretArns: rotatableSecretArns.length > 0 ? rotatableSecretArns : [{ 'Fn::Sub': 'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:token-vendor-no-rotation-*' }],
    resourcePolicy,
    endpointType: vpcEndpointId === '' ? 'REGIONAL' : 'PRIVATE',
    // Absent (null) unless PRIVATE: osls refuses endpoint ids on a regional API.
    vpcEndpointIds: vpcEndpointId === '' ? null : [vpcEndpointId],
    // provider.tracing.lambda: true sets every function's TracingConfig to Active.
    lambdaTracing,
    // With active tracing, Lambda sends segments as the function's role, which then needs
    // xray:PutTraceSegments and xray:PutTelemetryRecords. X-Ray has no resource-level
    // permissions, so AWS's managed policy for writing traces is attached instead of a
    // Resource "*" statement in the roles' own policies (infra/iam.yml); none without tracing.
    tracingManagedPolicyArns: lambdaTracing ? [{ 'Fn::Sub': 'arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess' }] : [],
  };
};
