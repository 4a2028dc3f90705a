import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds dist/ once, before any test: the process tests run bin/relay.mjs.
    globalSetup: ['./vitest.global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: more workers only add contention to the socket-heavy suites.
    maxWorkers: 2,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
