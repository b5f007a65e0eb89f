/**
 * Starting and stopping the local stand-ins' HTTP servers, one way for all of them (the Auth0
 * tenant, the SigV4 gateway, STS, the Lambda Invoke API): loopback only, and a stop that does not
 * wait for keep-alive sockets or requests left hanging on purpose.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listen on 127.0.0.1 (`port` 0: a free one); resolves with the port, rejects if it is taken. */
export function listenOnLoopback(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Stop listening and destroy every connection: server.close() alone only stops accepting, and
 * keep-alive sockets or hung requests would hold it open for minutes.
 */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}

/** `closeServer`, once: every later call gets the same promise. */
export function closerOf(server: Server): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => (closing ??= closeServer(server));
}
