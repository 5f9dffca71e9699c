// Unit tests only (test/unit: pure code, no database), without the global setup that starts
// PostgreSQL for `npm test`. Used by mutation testing (stryker.config.json), which runs these
// tests once per mutant.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    allowOnly: false,
  },
});
