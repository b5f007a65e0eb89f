import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { freePort, startMoto } from '../../local/moto.js';

const INSTALL_HINT = "moto_server (moto 5.2.1) is required: pip install 'moto[server]==5.2.1'";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs `body` with PATH set to `path`; spawn() reads process.env at call time. */
async function withPath<T>(path: string, body: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = path;
  try {
    return await body();
  } finally {
    process.env.PATH = saved;
  }
}

describe('moto_server launcher', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'moto-test-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    expect((server.address() as AddressInfo).port).toBe(port);
    await new Promise((resolve) => server.close(resolve));
  });

  it('starts moto_server, answers DynamoDB ListTables, and stops leaving no process', async () => {
    const moto = await startMoto();
    try {
      expect(moto.endpoint).toBe(`http://127.0.0.1:${moto.port}`);
      expect(isAlive(moto.pid)).toBe(true);

      const res = await fetch(moto.endpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          'x-amz-target': 'DynamoDB_20120810.ListTables',
          authorization:
            'AWS4-HMAC-SHA256 Credential=AKIDLOCAL/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=00',
        },
        body: '{}',
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ TableNames: expect.any(Array) });
    } finally {
      await moto.stop();
    }
    expect(isAlive(moto.pid)).toBe(false);
    expect(isAlive(-moto.pid)).toBe(false); // nothing left in its process group
    await expect(moto.stop()).resolves.toBeUndefined();
  });

  it('refuses a port that is already taken', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      await expect(startMoto({ port })).rejects.toThrow(/already in use/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('fails loudly, naming moto_server and how to install it, when the binary is missing', async () => {
    const emptyDir = mkdtempSync(join(scratch, 'empty-'));
    await withPath(emptyDir, async () => {
      const failure = await startMoto().then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      expect(failure?.message).toContain('not found on PATH');
      expect(failure?.message).toContain(INSTALL_HINT);
    });
  });

  it('reports the tail of stderr when moto_server exits early', async () => {
    const fakeDir = mkdtempSync(join(scratch, 'fake-'));
    const fake = join(fakeDir, 'moto_server');
    writeFileSync(fake, '#!/bin/sh\necho "Traceback: something broke" >&2\nexit 3\n');
    chmodSync(fake, 0o755);
    await withPath(`${fakeDir}:/usr/bin:/bin`, async () => {
      const failure = await startMoto().then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      expect(failure?.message).toContain('exited early (code 3)');
      expect(failure?.message).toContain('Traceback: something broke');
      expect(failure?.message).toContain(INSTALL_HINT);
    });
  });
});
