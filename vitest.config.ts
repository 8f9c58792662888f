import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // src/ compiled to dist/ once, before any file: tests and fixtures run one
    // build; then one line for each thing a skipped test needs (test/helpers/requires.ts).
    globalSetup: ["test/setup/build.ts", "test/setup/requirements.ts"],
    // Each test file in its own process; the cases inside spawn their own.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Two cores: more parallel files only adds noise to timing-free tests.
    maxWorkers: 2,
  },
});
