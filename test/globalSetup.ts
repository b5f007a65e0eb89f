import type { TestProject } from 'vitest/node';

/**
 * Placeholder: filled in with moto_server start-up once the harness exists.
 */
export default function setup(_project: TestProject): void {}
