/**
 * The local stack's state file (local/stackState.ts): a running stack is recognised by its live
 * process AND its bound port; a file whose process is gone, whose port is free (the pid now
 * another process's), or that does not parse is stale and may be replaced.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkRunningStack, localStateDir, portAvailability, readStackState, removeStackState, writeStackState, type StackState } from '../../local/stackState.js';

let dir: string;
let server: Server | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'stack-state-'));
});

afterEach(async () => {
  await new Promise<void>((done) => (server === undefined ? done() : server.close(() => done())));
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function state(pid: number, port: number): StackState {
  return {
    pid,
    port,
    gatewayUrl: `http://127.0.0.1:${port}/local`,
    stsOrigin: 'http://127.0.0.1:1',
    lambdaOrigin: 'http://127.0.0.1:2',
    functionName: 'token-vendor-local-vend',
    serverId: 'token-vendor-local',
    region: 'eu-west-1',
    grantsFile: '/somewhere/grants.json',
    startedAt: '2025-01-01T00:00:00.000Z',
  };
}

/** A port something listens on, as a running stack's gateway would. */
async function boundPort(): Promise<number> {
  server = createServer();
  await new Promise<void>((done) => server?.listen(0, '127.0.0.1', () => done()));
  return (server.address() as AddressInfo).port;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((done) => child.once('exit', done));
  if (child.pid === undefined) throw new Error('no pid');
  return child.pid;
}

describe('checkRunningStack', () => {
  it('no state file: none', async () => {
    expect(await checkRunningStack(dir)).toEqual({ kind: 'none' });
  });

  it('a live process whose port is bound: running', async () => {
    const port = await boundPort();
    writeStackState(dir, state(process.pid, port));

    expect(await checkRunningStack(dir)).toEqual({ kind: 'running', state: state(process.pid, port) });
  });

  it('a dead process: stale, even if something holds the port', async () => {
    const port = await boundPort();
    const pid = await deadPid();
    writeStackState(dir, state(pid, port));

    expect(await checkRunningStack(dir)).toEqual({ kind: 'stale', reason: `its process ${pid} is gone` });
  });

  it('a live process (a reused pid) with its port free: stale', async () => {
    const port = await boundPort();
    await new Promise<void>((done) => server?.close(() => done()));
    server = undefined;
    writeStackState(dir, state(process.pid, port));

    const check = await checkRunningStack(dir);

    expect(check.kind).toBe('stale');
    expect(check.kind === 'stale' && check.reason).toContain(`port ${port}`);
  });

  it.each([['not json {'], ['{"pid": "1"}'], ['[]']])('a file that is no stack state (%s): stale', async (text) => {
    writeFileSync(join(dir, 'stack.json'), text);

    expect((await checkRunningStack(dir)).kind).toBe('stale');
  });
});

describe('the state file', () => {
  it('is written whole (no temporary file left) and read back', () => {
    writeStackState(dir, state(123, 4567));

    expect(readdirSync(dir)).toEqual(['stack.json']);
    expect(JSON.parse(readFileSync(join(dir, 'stack.json'), 'utf8'))).toEqual(state(123, 4567));
    expect(readStackState(dir)).toEqual({ kind: 'state', state: state(123, 4567) });
  });

  it("is removed by its own stack only: a later stack's file stays", () => {
    writeStackState(dir, state(123, 4567));

    removeStackState(dir, 999);
    expect(readdirSync(dir)).toEqual(['stack.json']);
    removeStackState(dir, 123);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('lives in .local of the checkout, or in TOKEN_VENDOR_LOCAL_DIR (relative to where the command was typed)', () => {
    expect(localStateDir({}, '/repo', '/home/me')).toBe('/repo/.local');
    expect(localStateDir({ TOKEN_VENDOR_LOCAL_DIR: '' }, '/repo', '/home/me')).toBe('/repo/.local');
    expect(localStateDir({ TOKEN_VENDOR_LOCAL_DIR: 'other' }, '/repo', '/home/me')).toBe('/home/me/other');
    expect(localStateDir({ TOKEN_VENDOR_LOCAL_DIR: '/abs/dir' }, '/repo', '/home/me')).toBe('/abs/dir');
  });
});

describe('portAvailability', () => {
  it('tells a bound port from a free one', async () => {
    const port = await boundPort();

    expect(await portAvailability(port)).toBe('in-use');
    await new Promise<void>((done) => server?.close(() => done()));
    server = undefined;
    expect(await portAvailability(port)).toBe('free');
  });
});
