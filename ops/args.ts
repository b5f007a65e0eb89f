/**
 * The ops CLI's command line, parsed without touching anything: no environment, no files, no AWS.
 * `parseOpsArgs` answers with the usage to print (`help`), one line naming what is wrong
 * (`error`, with the usage that goes under it), or what to run. The exit codes the usage documents
 * follow the shell's own (Bash Reference Manual, "Exit Status": builtins return 2 for incorrect
 * usage): 0 done, 1 the command failed, 2 bad usage or configuration.
 */

export const COMMANDS = ['status', 'flush', 'refresh', 'rotate'] as const;
export type OpsCommand = (typeof COMMANDS)[number];

/** Where the command runs: a deployed stage, or the environment file of a local stack. */
export type OpsTarget =
  | { readonly kind: 'stage'; readonly stage: string; /** --region: else the SDK's (AWS_REGION, the profile's) */ readonly region?: string }
  | { readonly kind: 'env-file'; readonly path: string; /** from --local: the file `npm start` writes */ readonly local: boolean };

export interface OpsRun {
  readonly kind: 'run';
  readonly command: OpsCommand;
  /** required by flush, refresh and rotate; status takes none */
  readonly client?: string;
  /** flush and refresh only */
  readonly audience?: string;
  /** flush and refresh only: one Auth0 organization's tokens (its id or name, as the grants name it) */
  readonly organization?: string;
  readonly target: OpsTarget;
  /** --grants FILE, as given (resolved against the working directory by the caller) */
  readonly grants?: string;
  readonly json: boolean;
  readonly verbose: boolean;
}

export type ParsedOpsArgs =
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'error'; readonly message: string; /** the usage to print under the message */ readonly usage: string }
  | OpsRun;

/** The file `npm start` writes for `npm run invoke:local` and `--local` (local/stack.ts). */
export const LOCAL_ENV_FILE = '.local/invoke-local.env.json';

const PROGRAM = 'npm run ops --';
const WHERE = '(--stage S | --local | --env-file F)';

type ValueOption = 'client' | 'audience' | 'organization' | 'stage' | 'region' | 'env-file' | 'grants';
type FlagOption = 'local' | 'json' | 'verbose';
const VALUE_OPTIONS: readonly ValueOption[] = ['client', 'audience', 'organization', 'stage', 'region', 'env-file', 'grants'];
const FLAG_OPTIONS: readonly FlagOption[] = ['local', 'json', 'verbose'];

interface CommandSpec {
  readonly synopsis: string;
  readonly summary: string;
  readonly description: string;
  readonly client: 'required' | 'none';
  /** --audience and --organization */
  readonly audience: boolean;
}

const SPECS: Readonly<Record<OpsCommand, CommandSpec>> = {
  status: {
    synopsis: `status ${WHERE} [--grants FILE] [--json] [--verbose]`,
    summary: 'the cache: tokens by fingerprint (never a token), leases, back-offs',
    description:
      'Lists the cached tokens: per token its fingerprint, client, audience, scopes, Auth0 organization,\n' +
      'expiry, fetch time and last use (never the token itself); then the active leases and back-offs.',
    client: 'none',
    audience: false,
  },
  flush: {
    synopsis: `flush --client C [--audience A] [--organization O] ${WHERE} [--grants FILE] [--json] [--verbose]`,
    summary: "remove a client's cached tokens",
    description:
      "Removes a client's cached tokens (only those for audience A and organization O, if given). Every\n" +
      'instance drops its copy within MEMORY_REVALIDATE_SECONDS; the next request fetches a new token.',
    client: 'required',
    audience: true,
  },
  refresh: {
    synopsis: `refresh --client C [--audience A] [--organization O] ${WHERE} [--grants FILE] [--json] [--verbose]`,
    summary: "fetch a client's tokens anew now",
    description:
      "Fetches new tokens now for a client's cached tokens (only those for audience A and organization O,\n" +
      'if given), replacing the cached ones whether they are due or not.',
    client: 'required',
    audience: true,
  },
  rotate: {
    synopsis: `rotate --client C ${WHERE} [--grants FILE] [--json] [--verbose]`,
    summary: "rotate a client's credential now",
    description:
      "Starts a rotation of the client's credential now: with --stage, Secrets Manager RotateSecret\n" +
      "(follow it in the rotate function's log); with --local or --env-file, the four steps run here\n" +
      'against that stack.',
    client: 'required',
    audience: false,
  },
};

const OPTION_HELP: Readonly<Record<ValueOption | FlagOption | 'help', string>> = {
  client: '  --client C       the client, by its name in the grants file',
  audience: '  --audience A     only the tokens for this audience',
  organization: '  --organization O only the tokens for this Auth0 organization (its id or name, as the grants name it)',
  stage: '  --stage S        the deployed stack: table token-vendor-S, your AWS credentials and region',
  region: "  --region R       with --stage: the stack's region (default: AWS_REGION, else your profile's)",
  local: `  --local          the stack \`npm start\` runs (reads ${LOCAL_ENV_FILE})`,
  'env-file': '  --env-file F     an environment file (a JSON object of strings) like the one --local reads',
  grants: "  --grants FILE    the grants file (default: the environment file's GRANTS_FILE, else grants.json)",
  json: '  --json           print machine-readable JSON on stdout',
  verbose: "  --verbose        add the function's own structured logs",
  help: '  -h, --help       print this usage',
};

const EXIT_CODES = 'exit status: 0 done; 1 the command failed; 2 bad usage or configuration (nothing was run)';

export const GENERAL_USAGE = [
  `usage: ${PROGRAM} <command> [options] ${WHERE}`,
  `       ${PROGRAM} help [command]`,
  '',
  'Incident response for the token vendor (README, "Runbook").',
  '',
  'commands:',
  ...COMMANDS.map((c) => `  ${c.padEnd(9)}${SPECS[c].summary}`),
  `  ${'help'.padEnd(9)}this usage, or a command's with its options`,
  '',
  'where (exactly one):',
  OPTION_HELP.stage,
  OPTION_HELP.region,
  OPTION_HELP.local,
  OPTION_HELP['env-file'],
  '',
  'options:',
  OPTION_HELP.client,
  OPTION_HELP.audience,
  OPTION_HELP.organization,
  OPTION_HELP.grants,
  OPTION_HELP.json,
  OPTION_HELP.verbose,
  OPTION_HELP.help,
  '',
  `Run \`${PROGRAM} help <command>\` for a command's options.`,
  EXIT_CODES,
].join('\n');

export function commandUsage(command: OpsCommand): string {
  const spec = SPECS[command];
  return [
    `usage: ${PROGRAM} ${spec.synopsis}`,
    '',
    spec.description,
    '',
    'options:',
    ...(spec.client === 'required' ? [OPTION_HELP.client] : []),
    ...(spec.audience ? [OPTION_HELP.audience, OPTION_HELP.organization] : []),
    OPTION_HELP.stage,
    OPTION_HELP.region,
    OPTION_HELP.local,
    OPTION_HELP['env-file'],
    OPTION_HELP.grants,
    OPTION_HELP.json,
    OPTION_HELP.verbose,
    OPTION_HELP.help,
    '',
    EXIT_CODES,
  ].join('\n');
}

function isCommand(word: string | undefined): word is OpsCommand {
  return (COMMANDS as readonly string[]).includes(word ?? '');
}

/**
 * Parse `process.argv.slice(2)`. Pure: the same argv always gives the same answer. Options may come
 * before or after the command, as `--name value` or `--name=value`; a later `--` ends the options.
 */
export function parseOpsArgs(argv: readonly string[]): ParsedOpsArgs {
  const positionals: string[] = [];
  const values: Partial<Record<ValueOption, string>> = {};
  const flags: Partial<Record<FlagOption, true>> = {};
  let help = false;
  /** the first thing wrong: reported unless help was asked for */
  let problem: string | undefined;

  // A leading `--` is skipped: it shields the arguments from Node itself, which reads a script's
  // own `--env-file F` as its option and exits 9 if F is missing (nodejs/node#54232; since
  // nodejs/node#54237 it stops looking at `--`), so `node ops/cli.ts -- status --env-file F` works.
  for (let i = argv[0] === '--' ? 1 : 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) {
      problem ??= `unknown option ${shown(arg)}`;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    if ((FLAG_OPTIONS as readonly string[]).includes(name)) {
      if (inline !== undefined) problem ??= `--${name} takes no value`;
      else if (flags[name as FlagOption]) problem ??= `--${name} is given twice`;
      else flags[name as FlagOption] = true;
      continue;
    }
    if (!(VALUE_OPTIONS as readonly string[]).includes(name)) {
      problem ??= name === 'help' ? '--help takes no value' : `unknown option ${shown(`--${name}`)}`;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      // A next word that starts with a dash is another option, so this one is missing its value;
      // `--name=-x` still passes a value that starts with a dash.
      if (next !== undefined && !next.startsWith('-')) {
        value = next;
        i++;
      }
    }
    if (value === undefined || value.trim() === '') problem ??= `--${name} needs a value`;
    else if (values[name as ValueOption] !== undefined) problem ??= `--${name} is given twice`;
    else values[name as ValueOption] = value;
  }

  // `help [command]`, `--help`, `-h` and `<command> --help` answer before anything else is checked.
  const [first, second, ...rest] = positionals;
  if (first === 'help' || (help && (first === undefined || isCommand(first)))) {
    const topic = first === 'help' ? second : first;
    const extra = first === 'help' ? rest : [second, ...rest].filter((p) => p !== undefined);
    if (topic === undefined) return { kind: 'help', text: GENERAL_USAGE };
    if (!isCommand(topic)) return error(`unknown command ${JSON.stringify(topic)}; commands: ${COMMANDS.join(', ')}`);
    if (extra.length > 0) return error(`unexpected argument ${JSON.stringify(extra[0])}`, topic);
    return { kind: 'help', text: commandUsage(topic) };
  }

  if (first === undefined) return error(problem ?? `say which command: ${COMMANDS.join(', ')}`);
  if (!isCommand(first)) return error(`unknown command ${JSON.stringify(first)}; commands: ${COMMANDS.join(', ')}`);
  const command = first;
  const spec = SPECS[command];
  if (problem !== undefined) return error(problem, command);
  if (second !== undefined) return error(`unexpected argument ${JSON.stringify(second)}`, command);

  const { client, audience, organization, stage, region, grants } = values;
  const envFile = values['env-file'];
  if (spec.client === 'required' && client === undefined) return error(`${command} needs --client <name from the grants file>`, command);
  if (spec.client === 'none' && client !== undefined) return error(`${command} takes no --client`, command);
  if (!spec.audience && audience !== undefined) return error(`${command} takes no --audience`, command);
  if (!spec.audience && organization !== undefined) return error(`${command} takes no --organization`, command);

  const places = [stage !== undefined && '--stage', flags.local && '--local', envFile !== undefined && '--env-file'].filter((p): p is string => typeof p === 'string');
  if (places.length === 0) return error('say where: --stage <stage>, --local or --env-file <file>', command);
  if (places.length > 1) return error(`say where only once: ${places.join(' and ')} both given`, command);
  // The environment file names its own region and endpoint (AWS_REGION, AWS_ENDPOINT_URL): a
  // --region beside it would either be ignored or point the call somewhere the stack is not.
  if (region !== undefined && stage === undefined) return error(`--region goes with --stage only: ${places[0]}'s environment file sets the region`, command);
  if (region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) return error(`--region: ${shown(region)} is not a region name like eu-west-1`, command);
  // The function's logs (--verbose) are written to stdout, where --json's document goes.
  if (flags.json && flags.verbose) return error('--json and --verbose both given: the logs would mix with the JSON on stdout', command);
  const target: OpsTarget =
    stage !== undefined ? { kind: 'stage', stage, ...(region !== undefined ? { region } : {}) } : { kind: 'env-file', path: envFile ?? LOCAL_ENV_FILE, local: envFile === undefined };

  return {
    kind: 'run',
    command,
    ...(client !== undefined ? { client } : {}),
    ...(audience !== undefined ? { audience } : {}),
    ...(organization !== undefined ? { organization } : {}),
    target,
    ...(grants !== undefined ? { grants } : {}),
    json: flags.json === true,
    verbose: flags.verbose === true,
  };
}

function error(message: string, command?: OpsCommand): ParsedOpsArgs {
  return { kind: 'error', message, usage: command === undefined ? GENERAL_USAGE : commandUsage(command) };
}

/** The user's word as typed, or JSON-quoted if it holds anything but visible ASCII: the message stays one line. */
export function shown(word: string): string {
  return /^[\x21-\x7e]+$/.test(word) ? word : JSON.stringify(word);
}
