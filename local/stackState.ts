/**
 * The running local stack's state file, `<state dir>/stack.json`: which process serves which
 * origins. `npm start` writes it atomically once its servers listen and removes it when it stops;
 * a second `npm start` reads it to refuse to start over a running stack, and `npm run token --
 * --local` (client/cli.ts) reads the origins from it.
 *
 * A stack killed without its cleanup (SIGKILL, a crash of the machine) leaves the file behind.
 * Such a file is stale when its process is gone or its gateway port is free, and is then replaced.
 * Both checks are needed: a pid can be reused by an unrelated process, and a port can be taken by
 * another program.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { isAbsolute, join, resolve } from 'node:path';

/** The file name inside the state directory. client/cli.ts reads the same name and fields. */
export const STACK_STATE_FILE = 'stack.json';

/**
 * The environment variable naming another state directory (default `.local/` in the checkout),
 * honoured by the stack and by `npm run token -- --local` alike.
 */
export const STATE_DIR_VARIABLE = 'TOKEN_VENDOR_LOCAL_DIR';

export interface StackState {
  /** the process that serves the stack: `npm start`'s node process */
  readonly pid: number;
  /** the gateway's port on 127.0.0.1 */
  readonly port: number;
  /** `http://127.0.0.1:PORT/local`: the endpoint callers use (POST …/token) */
  readonly gatewayUrl: string;
  /** the STS stand-in's origin, where identity proofs are presigned for */
  readonly stsOrigin: string;
  /** the Lambda Invoke stand-in's origin (`--lambda-endpoint`) */
  readonly lambdaOrigin: string;
  /** the vend function's name at the Invoke stand-in (`--function`) */
  readonly functionName: string;
  /** PROOF_SERVER_ID of the local deployment */
  readonly serverId: string;
  readonly region: string;
  /** the grants file the user gave (the stack serves a copy with local domains) */
  readonly grantsFile: string;
  /** ISO 8601 */
  readonly startedAt: string;
}

/** The state directory: `TOKEN_VENDOR_LOCAL_DIR` (relative to `base`) or `<repo>/.local`. */
export function localStateDir(env: Readonly<Record<string, string | undefined>>, repo: string, base: string): string {
  const chosen = env[STATE_DIR_VARIABLE]?.trim();
  if (chosen === undefined || chosen === '') return join(repo, '.local');
  return isAbsolute(chosen) ? chosen : resolve(base, chosen);
}

/**
 * Write `text` to `file` so that a reader sees the old content or the new one, never a part:
 * a temporary file in the same directory, then rename(2), which replaces atomically on POSIX.
 */
export function writeFileAtomic(file: string, text: string, mode = 0o600): void {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, text, { mode });
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

export function writeStackState(dir: string, state: StackState): void {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, STACK_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

/** Remove the state file if it is still this process's: a later stack's file is not ours to delete. */
export function removeStackState(dir: string, pid: number): void {
  const current = readStackState(dir);
  if (current.kind === 'state' && current.state.pid === pid) rmSync(join(dir, STACK_STATE_FILE), { force: true });
}

export type ReadState = { kind: 'none' } | { kind: 'unreadable'; reason: string } | { kind: 'state'; state: StackState };

export function readStackState(dir: string): ReadState {
  const file = join(dir, STACK_STATE_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
    return { kind: 'unreadable', reason: `${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { kind: 'unreadable', reason: `${file} is not JSON` };
  }
  const state = asStackState(doc);
  return state === undefined ? { kind: 'unreadable', reason: `${file} is not a stack state` } : { kind: 'state', state };
}

function asStackState(doc: unknown): StackState | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const d = doc as Record<string, unknown>;
  const texts = ['gatewayUrl', 'stsOrigin', 'lambdaOrigin', 'functionName', 'serverId', 'region', 'grantsFile', 'startedAt'] as const;
  if (!Number.isSafeInteger(d.pid) || (d.pid as number) <= 0) return undefined;
  if (!Number.isSafeInteger(d.port) || (d.port as number) <= 0 || (d.port as number) > 65_535) return undefined;
  if (!texts.every((key) => typeof d[key] === 'string')) return undefined;
  return doc as StackState;
}

/**
 * Whether a process with this pid exists: signal 0 checks without signalling (kill(2)). EPERM
 * means it exists but belongs to another user.
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether `port` can be bound on 127.0.0.1 now (where the gateway listens): 'free', 'in-use'
 * (EADDRINUSE, whoever holds it), or the error code that prevents binding it (EACCES below 1024).
 */
export function portAvailability(port: number): Promise<'free' | 'in-use' | string> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => done(error.code === 'EADDRINUSE' ? 'in-use' : (error.code ?? 'error')));
    server.listen(port, '127.0.0.1', () => server.close(() => done('free')));
  });
}

export type StackCheck =
  | { kind: 'none' }
  | { kind: 'running'; state: StackState }
  /** a file left by a stack that is gone: replace it */
  | { kind: 'stale'; reason: string };

/** What the state directory says about a running stack. */
export async function checkRunningStack(dir: string): Promise<StackCheck> {
  const read = readStackState(dir);
  if (read.kind === 'none') return read;
  if (read.kind === 'unreadable') return { kind: 'stale', reason: read.reason };
  const { state } = read;
  if (!isProcessAlive(state.pid)) return { kind: 'stale', reason: `its process ${state.pid} is gone` };
  if ((await portAvailability(state.port)) === 'free') return { kind: 'stale', reason: `nothing listens on its port ${state.port} (pid ${state.pid} is another process now)` };
  return { kind: 'running', state };
}
