import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration suites start real servers (moto_server, oidc-provider) and child processes.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: more parallel files only contend for them.
    maxWorkers: 2,
    globalSetup: ['test/globalSetup.ts'],
  },
});
