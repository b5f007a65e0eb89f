/**
 * Starts one moto_server (Secrets Manager, DynamoDB) on a free loopback port for the whole run;
 * test files share it and isolate themselves with their own table and secret names. A missing
 * moto_server fails the run with a message naming it: never a silent skip.
 */
import type { TestProject } from 'vitest/node';
import { startMoto } from '../local/moto.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const moto = await startMoto();
  project.provide('motoEndpoint', moto.endpoint);
  return () => moto.stop();
}
