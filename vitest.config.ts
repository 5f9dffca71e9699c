// Two projects, split by whether they need a database. `vitest run` (npm test) runs both;
// `--project unit` (npm run test:unit) or `--project integration` runs one.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Two cores: a few files at once, each with its own database.
    maxWorkers: 3,
    // Generous, for busy 2-core machines; both projects inherit these (extends: true).
    testTimeout: 60_000,
    hookTimeout: 120_000,
    allowOnly: false,
    projects: [
      {
        // No database: pure code (test/unit) and the parsed Terraform and Cloud Build files
        // (test/infra). No globalSetup, so no PostgreSQL is started.
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts", "test/infra/**/*.test.ts"] },
      },
      {
        // The jobs, their bundles and the migrations against a real PostgreSQL, which the global
        // setup starts once per run (docs/testing.md says from where).
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/bundle/**/*.test.ts"],
          globalSetup: ["test/support/global-setup.ts"],
        },
      },
    ],
  },
});
