import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Two cores: a few files at once, each with its own database.
    maxWorkers: 3,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    allowOnly: false,
  },
});
