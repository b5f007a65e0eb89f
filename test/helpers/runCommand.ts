/**
 * A command as a separate process, its output collected: what the tests that run a printed
 * command, the CLI, the Python snippet or npm use. The environment is exactly `env` (the caller
 * decides what leaks in: usually no AWS profile, no instance metadata).
 */
import { spawn } from 'node:child_process';

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCommand(command: string, args: readonly string[], options: { env: Record<string, string>; cwd?: string }): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { ...(options.cwd === undefined ? {} : { cwd: options.cwd }), env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}
