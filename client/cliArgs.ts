/**
 * `npm run token`'s command line, parsed without touching anything: no files, no AWS. The answer
 * is the usage to print (`help`), one line naming what is wrong (`error`), or what to run. Exit
 * codes follow the shell's own (Bash Reference Manual, "Exit Status": 2 for incorrect usage):
 * 0 a token was printed, 1 no token, 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { organizationProblem } from './organization.js';

/** The deployed server id for a stage: serverless.yml's `proofServerId` default. */
export const DEFAULT_SERVER_ID_PATTERN = 'token-vendor-<stage>-<region>';

export interface TokenRun {
  readonly kind: 'run';
  readonly audience: string;
  readonly scope?: string;
  /** the Auth0 organization (`org_…` id or name) the token is for; absent: none */
  readonly organization?: string;
  /** exactly one of endpoint and functionName, unless `local` (which defaults the endpoint) */
  readonly endpoint?: string;
  readonly functionName?: string;
  readonly region?: string;
  readonly serverId?: string;
  readonly stsEndpoint?: string;
  readonly lambdaEndpoint?: string;
  readonly local: boolean;
  /** `--local` only: the principal whose local key signs (default: the first key of the file) */
  readonly as?: string;
}

export type ParsedTokenArgs = { readonly kind: 'help'; readonly text: string } | { readonly kind: 'error'; readonly message: string } | TokenRun;

/** Read when the flag is absent, so a shell can `export` its vendor once. */
export const ENV = {
  endpoint: 'TOKEN_VENDOR_ENDPOINT',
  functionName: 'TOKEN_VENDOR_FUNCTION',
  serverId: 'TOKEN_VENDOR_SERVER_ID',
  stsEndpoint: 'TOKEN_VENDOR_STS_ENDPOINT',
} as const;

export const USAGE = `usage: npm run -s token -- --audience AUD [--scope "S1 S2"] [--organization ORG]
                          (--endpoint URL | --function NAME | --local [--as PRINCIPAL_ARN])
                          [--region R] [--server-id ID] [--sts-endpoint URL] [--lambda-endpoint URL]

Prints an access token from the token vendor on stdout, and nothing else:
  TOKEN=$(npm run -s token -- --audience https://orders.example.com --scope read:orders \\
            --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com/prod --server-id token-vendor-prod-eu-west-1)
Signs with your AWS credentials (the default AWS chain: environment, profile, SSO, instance role)
and proves your identity to the vendor with a presigned sts:GetCallerIdentity (docs/identity-proof.md).

options:
  --audience AUD         the API the token is for (required)
  --scope "S1 S2"        space-separated scopes; default: every scope you are granted for AUD
  --organization ORG     the Auth0 organization the token is for: its org_… id or its name, as
                         your grant names it; default: a token without organization
  --endpoint URL         the vendor's REST API with its stage      (env ${ENV.endpoint})
  --function NAME        or: invoke the vend function directly, as a scheduled job does (env ${ENV.functionName})
  --region R             the vendor's region                       (env AWS_REGION, AWS_DEFAULT_REGION)
  --server-id ID         the deployment's proof server id, ${DEFAULT_SERVER_ID_PATTERN} unless the stage
                         sets proofServerId                        (env ${ENV.serverId})
  --sts-endpoint URL     a loopback STS stand-in to name in the proof (local stack and tests only)
  --lambda-endpoint URL  a loopback Lambda Invoke stand-in for --function (local stack only)
  --local                the stack \`npm start\` runs: its gateway, Lambda Invoke and STS stand-ins,
                         server id and region from .local/stack.json, its keys from
                         .local/credentials.json (env TOKEN_VENDOR_LOCAL_DIR: another directory;
                         flags override)
  --as PRINCIPAL_ARN     with --local: sign with that principal's local key (npm start prints one
                         command per grant); default: the first key of the file
  -h, --help             this usage

exit status: 0 a token was printed; 1 no token (the reason on stderr); 2 bad usage`;

export function parseTokenArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): ParsedTokenArgs {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        audience: { type: 'string' },
        scope: { type: 'string' },
        organization: { type: 'string' },
        endpoint: { type: 'string' },
        function: { type: 'string' },
        region: { type: 'string' },
        'server-id': { type: 'string' },
        'sts-endpoint': { type: 'string' },
        'lambda-endpoint': { type: 'string' },
        local: { type: 'boolean' },
        as: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    return { kind: 'error', message: error instanceof Error ? error.message : String(error) };
  }
  if (values.help === true) return { kind: 'help', text: USAGE };

  const text = (name: string): string | undefined => {
    const value = values[name];
    return typeof value === 'string' ? value : undefined;
  };
  // --local means the stack on this machine: what a shell exported for a deployed vendor must
  // not point it elsewhere (flags still do).
  const local = values.local === true;
  const fromEnv = (name: string): string | undefined => {
    if (local && name.startsWith('TOKEN_VENDOR_')) return undefined;
    const value = env[name];
    return value === undefined || value === '' ? undefined : value;
  };

  const audience = text('audience');
  if (audience === undefined || audience.trim() === '') return { kind: 'error', message: '--audience is required' };
  // A flag beats the environment; an endpoint flag also beats an exported function and the
  // other way round, so `--function` works in a shell that exported an endpoint.
  const endpointFlag = text('endpoint');
  const functionFlag = text('function');
  if (endpointFlag !== undefined && functionFlag !== undefined) return { kind: 'error', message: 'give --endpoint or --function, not both' };
  const endpoint = endpointFlag ?? (functionFlag === undefined ? fromEnv(ENV.endpoint) : undefined);
  const functionName = functionFlag ?? (endpointFlag === undefined ? fromEnv(ENV.functionName) : undefined);
  if (endpoint !== undefined && functionName !== undefined) {
    return { kind: 'error', message: `${ENV.endpoint} and ${ENV.functionName} are both set: choose with --endpoint or --function` };
  }
  if (endpoint === undefined && functionName === undefined && !local) {
    return { kind: 'error', message: `say where the vendor is: --endpoint URL, --function NAME or --local (or set ${ENV.endpoint})` };
  }
  const lambdaEndpoint = text('lambda-endpoint');
  if (lambdaEndpoint !== undefined && functionName === undefined) return { kind: 'error', message: '--lambda-endpoint applies only with --function' };
  const region = text('region') ?? fromEnv('AWS_REGION') ?? fromEnv('AWS_DEFAULT_REGION');
  if (region === undefined && !local) return { kind: 'error', message: '--region is required (or set AWS_REGION)' };
  const serverId = text('server-id') ?? fromEnv(ENV.serverId);
  if (serverId === undefined && !local) {
    return { kind: 'error', message: `--server-id is required: the deployment's proof server id, ${DEFAULT_SERVER_ID_PATTERN} by default (or set ${ENV.serverId})` };
  }
  const as = text('as');
  // Elsewhere the default AWS chain signs: a principal cannot be chosen by naming it.
  if (as !== undefined && !local) return { kind: 'error', message: '--as applies only with --local (it picks a key of the local stack)' };
  const scope = text('scope');
  const organization = text('organization');
  // The client would refuse it too, but only after the credentials were loaded and as exit 1:
  // a bad flag is bad usage (exit 2), said before anything is touched.
  const organizationError = organization === undefined ? undefined : organizationProblem(organization);
  if (organizationError !== undefined) return { kind: 'error', message: `--${organizationError}` };
  const stsEndpoint = text('sts-endpoint') ?? fromEnv(ENV.stsEndpoint);

  return {
    kind: 'run',
    audience,
    local,
    ...(scope === undefined ? {} : { scope }),
    ...(organization === undefined ? {} : { organization }),
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(functionName === undefined ? {} : { functionName }),
    ...(region === undefined ? {} : { region }),
    ...(serverId === undefined ? {} : { serverId }),
    ...(stsEndpoint === undefined ? {} : { stsEndpoint }),
    ...(lambdaEndpoint === undefined ? {} : { lambdaEndpoint }),
    ...(as === undefined ? {} : { as }),
  };
}
