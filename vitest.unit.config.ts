// The unit tests of pure code (test/unit), on their own: no globalSetup, so no PostgreSQL is
// started. Mutation testing (stryker.config.json) runs them once per mutant through this file. The
// `unit` project of vitest.config.ts runs the same files, together with test/infra.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    allowOnly: false,
  },
});
