/**
 * Launcher for moto_server (Python moto 5.2.1), the AWS Secrets Manager + DynamoDB emulator used
 * by the tests and the local stack.
 *
 * moto_server runs in its own process group (it may be a pyenv shim or wrapper script that starts
 * python as a child), so stopping it signals the whole group. Groups still running when this
 * process exits, or is killed by SIGINT/SIGTERM/SIGHUP, are SIGKILLed so no emulator outlives it.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

export interface MotoServer {
  /** 'http://127.0.0.1:PORT' */
  readonly endpoint: string;
  readonly port: number;
  /** pid of moto_server, which leads its own process group */
  readonly pid: number;
  /** SIGTERM to the process group, SIGKILL after 3 s; resolves once moto_server has exited */
  stop(): Promise<void>;
}

const INSTALL_HINT = "moto_server (moto 5.2.1) is required: pip install 'moto[server]==5.2.1'";
const READY_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 100;
const KILL_AFTER_MS = 3_000;
/** How much of moto's stderr to keep for error messages. */
const STDERR_TAIL_CHARS = 4_000;

/** Bind 127.0.0.1:0, read the port the OS picked, release it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export async function startMoto(opts: { port?: number } = {}): Promise<MotoServer> {
  const port = opts.port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${port}`;
  // Readiness is "moto answers on the port", which another server already there would fake.
  if (opts.port !== undefined && !(await isPortFree(port))) {
    throw new Error(`moto_server cannot start on ${endpoint}: the port is already in use`);
  }

  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    await new Promise((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found on PATH' : String(err);
    throw new Error(`moto_server could not be started: ${reason}. ${INSTALL_HINT}`, { cause: err });
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`moto_server could not be started: no pid. ${INSTALL_HINT}`);
  liveGroups.add(pid);
  installCleanupHandlers();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  // moto logs every request on stderr: keep draining it (a full pipe would block moto), keep the tail.
  const stderr = child.stderr as Socket; // stdio[2] is 'pipe', and a pipe is a net.Socket
  let stderrTail = '';
  stderr.setEncoding('utf8');
  stderr.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
  });
  const stderrClosed = new Promise<void>((resolve) => stderr.once('close', () => resolve()));
  // Neither moto nor its stderr pipe may keep this process alive; the cleanup handlers see to it.
  child.unref();
  stderr.unref();

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await answersAsMoto(endpoint))) {
    let reason: string | undefined;
    if (child.exitCode !== null || child.signalCode !== null) {
      reason = `exited early (${child.exitCode !== null ? `code ${child.exitCode}` : child.signalCode})`;
    } else if (Date.now() > deadline) {
      reason = `not answering HTTP after ${READY_TIMEOUT_MS / 1000} s`;
    }
    if (reason) {
      await stopGroup(child, pid, exited);
      await stderrClosed; // its last words may arrive after the exit event
      const tail = stderrTail.trim() ? `\n--- moto_server stderr (tail) ---\n${stderrTail.trim()}` : '';
      throw new Error(`moto_server failed to start on ${endpoint}: ${reason}. ${INSTALL_HINT}${tail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }

  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    port,
    pid,
    stop: () => {
      stopping ??= stopGroup(child, pid, exited);
      return stopping;
    },
  };
}

/** True once moto's own API answers (not merely something else listening on the port). */
async function answersAsMoto(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/moto-api/data.json`, { signal: AbortSignal.timeout(1_000) });
    const body: unknown = await res.json();
    return res.ok && typeof body === 'object' && body !== null;
  } catch {
    return false;
  }
}

async function stopGroup(child: ChildProcess, pid: number, exited: Promise<void>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    signalGroup(pid, 'SIGTERM');
    const escalation = setTimeout(() => signalGroup(pid, 'SIGKILL'), KILL_AFTER_MS);
    await exited;
    clearTimeout(escalation);
  }
  // Anything moto left behind in its group.
  signalGroup(pid, 'SIGKILL');
  liveGroups.delete(pid);
  if (liveGroups.size === 0) removeCleanupHandlers();
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup when this process goes away with emulators still running.

const liveGroups = new Set<number>();
const CLEANUP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let handlersInstalled = false;

function killLiveGroups(): void {
  for (const pid of liveGroups) signalGroup(pid, 'SIGKILL');
  liveGroups.clear();
}

/**
 * Kills the emulators, then lets the signal do what it would have done: if nothing else listens
 * for it, it is raised again without this handler, so the default action (exit) applies.
 */
function onSignal(signal: NodeJS.Signals): void {
  killLiveGroups();
  removeCleanupHandlers();
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installCleanupHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killLiveGroups);
  for (const signal of CLEANUP_SIGNALS) process.on(signal, onSignal);
}

function removeCleanupHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', killLiveGroups);
  for (const signal of CLEANUP_SIGNALS) process.off(signal, onSignal);
}
