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
    throw configError(`grants file rejected: ${message}`);
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
    // A variable set from a stage parameter: say which, so the fix is on the command line.
    const variable = /^([A-Z_]+):/.exec(error.message)?.[1];
    const fromParam = variable && paramOfVariable(variable);
    throw configError(`environment rejected: ${error.message}${fromParam ? ` (the ${fromParam} stage parameter)` : ''}`);
  }
}

/** The stage parameter serverless.yml sets a variable from (`NAME: '${param:name}'`), if any. */
function paramOfVariable(variable) {
  const yml = readFileSync(path.join(root, 'serverless.yml'), 'utf8');
  return new RegExp(`^\\s+${variable}: '?\\$\\{param:(\\w+)\\}'?\\s*$`, 'm').exec(yml)?.[1];
}

/** CloudFormation logical id for a client's secret: alphanumeric, stable per client name. */
function secretLogicalId(clientName) {
  return `ClientSecret${clientName.replace(/[^A-Za-z0-9]/g, '')}`;
}

// --- Stage parameters: every one checked at package time, an unknown name refused ---------------
//
// osls hands `--param="name=value"` to `${param:name}` and ignores every name nothing reads: a typo
// (`vpcEndpointID`) would silently leave the API public. Here the names a stage may set are the keys
// of serverless.yml's `params.default`; each needs a check below (a declared parameter without one
// fails packaging too), and each check's message names the parameter.

/** A deliberate configuration error: its message is the whole story, so osls prints no stack. */
function configError(message) {
  const error = new Error(message);
  error.stack = message;
  return error;
}

/**
 * The partition of a region, as ARNs spell it: the API's callers, the break-glass role and the alarm
 * topic must be in it (IAM does not cross partitions). The partitions grants.json accepts
 * (functions/core/grants.ts): https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html
 */
function partitionOf(region) {
  if (/^cn-[a-z]+-\d+$/.test(region)) return 'aws-cn';
  if (/^us-gov-[a-z]+-\d+$/.test(region)) return 'aws-us-gov';
  if (/^[a-z]{2}-[a-z]+-\d+$/.test(region) && !region.includes('-iso')) return 'aws';
  throw configError(`region "${region}": not a region of the aws, aws-cn or aws-us-gov partition, the ones grants.json accepts`);
}

// CloudWatch Logs accepts only these retention periods (PutRetentionPolicy, retentionInDays:
// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html).
// 1096 is one of them, but osls's own schema for provider.logRetentionInDays omits it
// (node_modules/osls/lib/plugins/aws/provider.js, awsLogRetentionInDays) and configValidationMode
// is error, so it would fail there with a message that does not name the parameter.
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 2192, 2557, 2922, 3288, 3653];

// Powertools reads POWERTOOLS_LOG_LEVEL case-sensitively and silently falls back to INFO on anything
// else (@aws-lambda-powertools/logger, Logger.setInitialLogLevel / isValidLogLevel; the levels are
// its LogLevel constants, https://docs.powertools.aws.dev/lambda/typescript/latest/core/logger/).
const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'SILENT'];

/**
 * A schedule expression: `rate(<n> <unit>)` (singular unit for 1, plural otherwise) or `cron(<six
 * fields>)`, as EventBridge defines them
 * (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html).
 * Secrets Manager's rotation schedules take hours or days only, at least every 4 hours, at most
 * 1000 days (RotationRulesType.ScheduleExpression and AutomaticallyAfterDays:
 * https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotationRulesType.html).
 * A cron expression's fields are counted and their characters checked; the service checks the rest.
 */
function scheduleProblem(value, units, minimum) {
  const cron = /^cron\((.*)\)$/.exec(value);
  if (cron) {
    const fields = cron[1].trim().split(/\s+/);
    if (fields.length !== 6) return `a cron expression has six fields (minutes hours day-of-month month day-of-week year), got ${fields.length}`;
    if (fields.some((f) => !/^[0-9A-Za-z*?,\-/#]+$/.test(f))) return 'a cron field holds only digits, names (JAN, MON), and , - * ? / L W #';
    return undefined;
  }
  const rate = /^rate\(([1-9]\d*) ([a-z]+)\)$/.exec(value);
  if (!rate) return 'not rate(<n> <unit>) or cron(<six fields>)';
  const n = Number(rate[1]);
  const unit = rate[2];
  const singular = unit.replace(/s$/, '');
  if (!units.includes(singular)) return `the unit must be one of ${units.map((u) => `${u}(s)`).join(', ')}`;
  if ((n === 1) !== (unit === singular)) return n === 1 ? `1 takes the singular unit: rate(1 ${singular})` : `${n} takes the plural unit: rate(${n} ${singular}s)`;
  const hours = singular === 'minute' ? n / 60 : singular === 'hour' ? n : n * 24;
  if (minimum && hours < minimum.hours) return `at least ${minimum.label}`;
  if (minimum && hours > minimum.maxHours) return `at most ${minimum.maxLabel}`;
  return undefined;
}

const ACCOUNT_ID = /^\d{12}$/;

/**
 * One check per stage parameter serverless.yml declares: `(value, context) => problem | undefined`,
 * value the resolved parameter as a string ('' when unset), context `{ partition, region }`.
 */
const PARAM_CHECKS = {
  // Comma-separated 12-digit account ids (https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-identifiers.html).
  allowedAccountIds: (value) => {
    if (value === '') return undefined;
    const items = value.split(',').map((s) => s.trim());
    const bad = items.find((a) => !ACCOUNT_ID.test(a));
    if (bad !== undefined) return bad === '' ? `"${value}" has an empty entry (comma-separated 12-digit account ids)` : `"${bad}" is not a 12-digit AWS account id`;
    const dup = items.find((a, i) => items.indexOf(a) !== i);
    if (dup !== undefined) return `account ${dup} is listed twice`;
    return undefined;
  },
  // Organization.Id: https://docs.aws.amazon.com/organizations/latest/APIReference/API_Organization.html
  organizationId: (value) => (value === '' || /^o-[a-z0-9]{10,32}$/.test(value) ? undefined : `"${value}" is not an AWS Organizations id (o- and 10 to 32 lower-case letters or digits)`),
  // EC2 resource ids are the prefix and 8 or 17 hex characters
  // (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html).
  vpcEndpointId: (value) => (value === '' || /^vpce-(?:[0-9a-f]{8}|[0-9a-f]{17})$/.test(value) ? undefined : `"${value}" is not a VPC endpoint id (vpce- and 8 or 17 hex characters)`),
  logRetentionDays: (value) => (LOG_RETENTION_DAYS.includes(Number(value)) && /^\d+$/.test(value) ? undefined : `"${value}" is not a retention CloudWatch Logs accepts (${LOG_RETENTION_DAYS.join(', ')})`),
  // An SNS topic ARN, arn:<partition>:sns:<region>:<account>:<name> (names: up to 256 letters,
  // digits, - and _; FIFO topics end in .fifo: https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html).
  // CloudWatch alarms notify a standard topic in their own Region
  // (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Notify_Users_Alarm_Changes.html).
  alarmTopicArn: (value, { partition, region }) => {
    if (value === '') return undefined;
    const m = /^arn:([\w-]+):sns:([a-z0-9-]+):(\d{12}):([\w-]{1,256})$/.exec(value);
    if (!m) return `"${value}" is not an SNS topic ARN (arn:${partition}:sns:${region}:<account>:<topic>)`;
    if (m[1] !== partition) return `"${value}" is in partition ${m[1]}, not ${partition} (region ${region})`;
    if (m[2] !== region) return `"${value}" is in region ${m[2]}: the alarms are in ${region}, and CloudWatch notifies a topic of its own Region`;
    return undefined;
  },
  grantsFile: (value, { root }) => {
    if (value === '') return 'is empty (default grants.json)';
    try {
      readFileSync(path.resolve(root, value));
      return undefined;
    } catch (error) {
      return `"${value}" cannot be read (${error.code ?? error.message})`;
    }
  },
  refreshSchedule: (value) => {
    const problem = scheduleProblem(value, ['minute', 'hour', 'day']);
    return problem && `"${value}": ${problem}`;
  },
  // Whole number; the range is config.ts's (checked with the environment below).
  quotaPerClientPerHour: (value) => (/^\d+$/.test(value) ? undefined : `"${value}" is not a whole number (0: no cap)`),
  rotationSchedule: (value) => {
    const problem = scheduleProblem(value, ['hour', 'day'], { hours: 4, label: 'every 4 hours', maxHours: 1000 * 24, maxLabel: '1000 days' });
    return problem && `"${value}": ${problem}`;
  },
  logLevel: (value) => (LOG_LEVELS.includes(value) ? undefined : `"${value}" is not a Powertools log level (${LOG_LEVELS.join(', ')}; upper case)`),
  tracing: (value) => (value === 'true' || value === 'false' ? undefined : `"${value}" is not true or false`),
  // A role ARN of the deploying partition (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns).
  breakGlassRoleArn: (value, { partition }) => {
    if (value === '') return undefined;
    const m = /^arn:([\w-]+):iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/.exec(value);
    if (!m) return `"${value}" is not an IAM role ARN (arn:${partition}:iam::<account>:role/<name>)`;
    if (m[1] !== partition) return `"${value}" is in partition ${m[1]}, not ${partition}`;
    return undefined;
  },
  // Lambda's reserved concurrency is a whole number; 0 would stop vend altogether
  // (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
  vendReservedConcurrency: (value) => (value === '' || /^[1-9]\d{0,4}$/.test(value) ? undefined : `"${value}" is not a positive whole number (empty: unreserved)`),
  apiGatewayCloudWatchRole: (value) => (value === 'true' || value === 'false' ? undefined : `"${value}" is not true or false`),
};

/** The names a `--param` list (osls's processedInput.options.param: "name=value" strings) sets. */
function cliParamNames(param) {
  const items = param == null ? [] : Array.isArray(param) ? param : [param];
  return items.map((item) => String(item).split('=')[0]);
}

/**
 * Every problem with the stage parameters, one message each (empty: all good).
 *
 * - declared: the names serverless.yml's params.default sets;
 * - supplied: `{ name, from }` for every name set elsewhere (a `--param`, a `params.<stage>` block);
 * - values: each declared parameter, resolved, as a string;
 * - context: `{ region, root }`.
 */
function stageParamProblems({ declared, supplied, values, region, root: base = root }) {
  const problems = [];
  const known = [...declared].sort((a, b) => a.localeCompare(b));
  for (const { name, from } of supplied) {
    if (declared.includes(name)) continue;
    const sameButCase = declared.find((d) => d.toLowerCase() === name.toLowerCase());
    problems.push(`param ${name} (${from}): not a stage parameter of this service${sameButCase ? ` (did you mean ${sameButCase}? names are case-sensitive)` : ''}; known: ${known.join(', ')}`);
  }
  for (const name of declared) {
    if (!Object.hasOwn(PARAM_CHECKS, name)) problems.push(`param ${name}: declared in serverless.yml but infra/deployment.cjs has no check for it`);
  }
  let partition;
  try {
    partition = partitionOf(region);
  } catch (error) {
    return [...problems, error.message];
  }
  for (const name of declared) {
    if (!Object.hasOwn(PARAM_CHECKS, name)) continue;
    const problem = PARAM_CHECKS[name](values[name] ?? '', { partition, region, root: base });
    if (problem !== undefined) problems.push(`param ${name}: ${problem}`);
  }
  return problems;
}

/** The account and partition of a grants.json principal (an ARN, or `{ arn, uniqueId }`). */
function principalAccount(principal) {
  const arn = typeof principal === 'string' ? principal : principal?.arn;
  const m = /^arn:([\w-]+):iam::(\d{12}):/.exec(String(arn));
  return m ? { partition: m[1], account: m[2] } : undefined;
}

/**
 * Whether the API's resource policy (built below) lets each grant's principals in: their account in
 * allowedAccountIds (empty: the deploying account only, unknown offline), or in organizationId.
 * Returns `{ problems, notes, deployingAccountMustBe }`:
 * - problems: grants no caller of which could ever be let in (errors);
 * - notes: what packaging cannot check (organization membership: only AWS Organizations knows it);
 * - deployingAccountMustBe: with the default allowedAccountIds, the principals' accounts, which the
 *   deploy checks against the deploying account (infra/plugins/stage-params.cjs).
 */
function grantCallerProblems(grants, { allowedAccountIds, organizationId, partition }) {
  const problems = [];
  const notes = [];
  const deployingAccountMustBe = [];
  const listed = allowedAccountIds.length > 0;
  let firstAccount;
  (grants.grants ?? []).forEach((grant, i) => {
    (grant.principals ?? []).forEach((principal, j) => {
      const field = `grants[${i}].principals[${j}]`;
      const parsed = principalAccount(principal);
      if (parsed === undefined) return; // the grants validator has refused it already
      const { account } = parsed;
      if (parsed.partition !== partition) {
        problems.push(`${field}: partition ${parsed.partition} cannot call an API deployed in partition ${partition}`);
        return;
      }
      if (listed) {
        if (allowedAccountIds.includes(account)) return;
        if (organizationId !== '') {
          notes.push(`${field}: account ${account} is not in allowedAccountIds (${allowedAccountIds.join(', ')}); it can call the API only if it belongs to organization ${organizationId}, which packaging cannot check (only AWS Organizations knows its accounts)`);
          return;
        }
        problems.push(`${field}: account ${account} is not allowed to call the API (allowedAccountIds ${allowedAccountIds.join(', ')})`);
        return;
      }
      // The default: the deploying account only (or the organization's accounts).
      if (organizationId !== '') {
        notes.push(`${field}: account ${account} can call the API only if it is the deploying account or belongs to organization ${organizationId}; packaging checks neither (set allowedAccountIds to name the accounts)`);
        return;
      }
      deployingAccountMustBe.push({ field, account });
      if (firstAccount === undefined) firstAccount = { field, account };
      else if (account !== firstAccount.account) {
        problems.push(`${field}: account ${account} is not allowed to call the API (allowedAccountIds is empty: only the deploying account may, and ${firstAccount.field} is in ${firstAccount.account}); list the accounts in allowedAccountIds`);
      }
    });
  });
  return { problems, notes, deployingAccountMustBe };
}

function list(value) {
  return String(value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

module.exports = async ({ resolveVariable, resolveConfigurationProperty, options }) => {
  const param = async (name) => {
    const value = await resolveVariable(`param:${name}, ''`);
    return value == null ? '' : String(value);
  };
  // Every parameter resolved first (osls may call this again once a variable it depends on is
  // ready), then all checked at once: a typo fails before grants.json is validated and anything is
  // built, with every problem listed.
  const stage = String(await resolveVariable('sls:stage'));
  const region = String(await resolveVariable('self:provider.region'));
  const paramBlocks = (await resolveConfigurationProperty(['params'])) ?? {};
  const declared = Object.keys(paramBlocks.default ?? {});
  const supplied = [
    ...cliParamNames(options?.param).map((name) => ({ name, from: '--param' })),
    ...Object.entries(paramBlocks)
      .filter(([block]) => block !== 'default')
      .flatMap(([block, values]) => Object.keys(values ?? {}).map((name) => ({ name, from: `params.${block} in serverless.yml` }))),
  ];
  const values = {};
  for (const name of declared) values[name] = await param(name);
  const problems = stageParamProblems({ declared, supplied, values, region });
  if (problems.length > 0) throw configError(`stage parameters rejected:\n  ${problems.join('\n  ')}`);
  const partition = partitionOf(region);

  const lambdaTracing = values.tracing === 'true';
  const breakGlassRoleArn = values.breakGlassRoleArn;
  const vendReservedConcurrency = values.vendReservedConcurrency;

  // Each function's role has a fixed name, so the KMS key policy can name it without depending on
  // it (the roles' own policies name the key: a reference both ways would be a cycle).
  const roleNames = {};
  const roleArns = {};
  for (const fn of ['vend', 'refresh', 'rotate']) {
    const name = `token-vendor-${stage}-${region}-${fn}`;
    if (name.length > 64) throw configError(`stage "${stage}": the role name ${name} is longer than IAM's 64 characters; use a shorter stage name`);
    roleNames[fn] = { 'Fn::Sub': `token-vendor-${stage}-\${AWS::Region}-${fn}` };
    roleArns[fn] = { 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/token-vendor-${stage}-\${AWS::Region}-${fn}` };
  }
  const breakGlass = breakGlassRoleArn === '' ? [] : [breakGlassRoleArn];

  const grantsFile = path.resolve(root, values.grantsFile);
  const grants = validatedGrants(grantsFile);
  const accounts = list(values.allowedAccountIds);
  const organizationId = values.organizationId;
  const vpcEndpointId = values.vpcEndpointId;
  // A grant the resource policy would refuse is an error, naming the grant; what cannot be checked
  // offline is said (osls prints this process's stderr).
  const callers = grantCallerProblems(grants, { allowedAccountIds: accounts, organizationId, partition });
  if (callers.problems.length > 0) throw configError(`grants file rejected (${path.relative(root, grantsFile)}):\n  ${callers.problems.join('\n  ')}`);
  for (const note of callers.notes) process.stderr.write(`token-vendor: cannot check offline: ${note}\n`);
  const environment = await resolveVariable('self:provider.environment');
  checkEnvironment(environment, grantsFile);

  const secrets = {};
  /** secret reference (Ref or ARN) per client name */
  const secretRefOf = new Map();
  const seenLogicalIds = new Map();
  for (const [name, client] of Object.entries(grants.clients)) {
    const logicalId = secretLogicalId(name);
    if (seenLogicalIds.has(logicalId)) {
      throw configError(`grants file rejected: clients.${name}: name collides with clients.${seenLogicalIds.get(logicalId)} once reduced to a CloudFormation id`);
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
        // Not kms:Create*: it includes CreateGrant, and a grant (which carries no encryption-context
        // or ViaService condition of ours) would let any principal whose IAM policy allows
        // kms:CreateGrant decrypt every data key in the table. Grants are only for AWS services
        // acting for a caller (DynamoDB's encryption at rest), below. Administration itself
        // (PutKeyPolicy, UpdateAlias, ...) stays with the account's administrators, who remain the
        // root of trust (README, Threat model).
        Action: [
          'kms:CreateAlias', 'kms:Describe*', 'kms:Enable*', 'kms:List*', 'kms:Put*', 'kms:Update*', 'kms:Revoke*', 'kms:Disable*', 'kms:Get*', 'kms:Delete*',
          'kms:ScheduleKeyDeletion', 'kms:CancelKeyDeletion', 'kms:TagResource', 'kms:UntagResource',
        ],
        Resource: '*',
      },
      {
        // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-grant-is-for-aws-resource
        Sid: 'AwsServicesOnlyMayCreateGrants',
        Effect: 'Allow',
        Principal: accountPrincipal,
        Action: ['kms:CreateGrant', 'kms:ListGrants', 'kms:RevokeGrant'],
        Resource: '*',
        Condition: { Bool: { 'kms:GrantIsForAWSResource': 'true' } },
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
  const rotationSchedule = values.rotationSchedule;
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
    // With the default allowedAccountIds (the deploying account, unknown offline), the accounts
    // the grants' principals are in: infra/plugins/stage-params.cjs checks them at deploy time.
    deployingAccountMustBe: callers.deployingAccountMustBe,
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

// For the tests (test/deploy/serverless.test.ts), which check what packaging checks through the
// very functions packaging calls.
Object.assign(module.exports, { stageParamProblems, grantCallerProblems, partitionOf, PARAM_CHECKS, LOG_RETENTION_DAYS });
