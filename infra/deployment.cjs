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
// - turns Lambda active tracing (X-Ray) on or off, with the roles' permission to send traces.
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

  const grantsFile = path.resolve(root, (await param('grantsFile')) || 'grants.json');
  const grants = validatedGrants(grantsFile);
  checkEnvironment(await resolveVariable('self:provider.environment'), grantsFile);

  const secrets = {};
  const secretArns = [];
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
      secretArns.push(client.secretId);
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
    secretArns.push({ Ref: logicalId });
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
    secretArns,
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
