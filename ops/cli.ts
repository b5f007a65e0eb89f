/**
 * `npm run ops -- <command>`: incident response for the token vendor (README, "Runbook").
 * `npm run ops -- help` prints the commands and options (ops/args.ts holds the usage text).
 *
 * The steps, each finished before the next starts:
 *   1. parse the arguments (ops/args.ts, pure): help → usage on stdout, exit 0; bad usage → one
 *      line and the usage on stderr, exit 2;
 *   2. resolve the configuration (ops/target.ts: environment file, grants, client name), still
 *      without AWS: a bad one → one line and the usage on stderr, exit 2;
 *   3. run the command (ops/commands.ts, the only place that builds AWS clients and the vendor):
 *      a failure → one line `<command> failed: <Name>: <message>; <context>` on stderr, exit 1,
 *      the context naming the AWS service, resource, region, endpoint and credential source of a
 *      failed AWS call (ops/awsContext.ts), and the first cause.
 */
import { describe } from '../functions/core/errors.js';
import { parseOpsArgs, commandUsage, type OpsRun } from './args.js';

// Operators' machines may run Node 20; the SDK's notice about 2027 releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// Only the parser (and the error describer, which imports nothing) is loaded up front: help and
// bad usage need nothing else.
const parsed = parseOpsArgs(process.argv.slice(2));
if (parsed.kind === 'help') {
  process.stdout.write(`${parsed.text}\n`);
  process.exitCode = 0;
} else if (parsed.kind === 'error') {
  usageError(parsed.message, parsed.usage);
} else {
  await resolveAndRun(parsed);
}

async function resolveAndRun(run: OpsRun): Promise<void> {
  let code = 0;
  let config: { tableName: string; sealKeyId: string } | undefined;
  try {
    const { resolveTarget } = await import('./target.js');
    const resolved = resolveTarget(run);
    if (resolved.kind === 'error') return usageError(resolved.message, commandUsage(run.command));
    config = resolved.config;
    // The SDK reads AWS_ENDPOINT_URL, AWS_REGION and credentials from the environment.
    // The function's structured logs would mix with this tool's output: off unless --verbose.
    Object.assign(process.env, resolved.fileEnv, { POWERTOOLS_LOG_LEVEL: run.verbose ? 'INFO' : 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' });
    if (run.target.kind === 'stage' && run.target.region !== undefined) process.env.AWS_REGION = run.target.region;
    const { runCommand } = await import('./commands.js');
    const output = await runCommand(run, resolved.config);
    if (run.json) await write(`${JSON.stringify(output, null, 2)}\n`);
  } catch (error) {
    // Names and messages only, never the error object: causes can carry requests.
    const { name, message } = describe(error);
    let context = '';
    try {
      const { awsFailureContext } = await import('./awsContext.js');
      if (config !== undefined) context = `; ${await awsFailureContext(error, config)}`;
    } catch {
      // The context is a help, never a second failure: the line above still names the error.
    }
    console.error(oneLine(`${run.command} failed: ${name}: ${message}${context}`));
    code = 1;
  }
  // The SDK's kept-alive sockets would hold the process open.
  process.exit(code);
}

/** Exit 2: one line naming the problem, then the usage, both on stderr (nothing was run). */
function usageError(message: string, usage: string): void {
  console.error(`ops: ${oneLine(message)}\n\n${usage}`);
  process.exitCode = 2;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ');
}

function write(text: string): Promise<void> {
  return new Promise((done) => process.stdout.write(text, () => done()));
}
