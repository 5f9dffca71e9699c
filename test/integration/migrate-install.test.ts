// `migrate up` on a database whose application already owns its tables in schema public (shaped
// like EdgeWatch's and REC-002's): it installs the product's own schema, telemetry_jobs, and
// touches nothing else. The starter telemetry schema is only made on request
// (--with-starter-schema), and on such a database that request fails whole, changing nothing.
import { afterEach, describe, expect, it } from "vitest";
import { ddlOutside, recordDdl, schemaCatalog } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";
import { createLegacyTable, type LegacyShape, legacyTable } from "../support/legacy-tables.ts";

let t: TestDatabase | undefined;
afterEach(async () => {
  await t?.drop();
  t = undefined;
});

describe.each<LegacyShape>(["edgewatch", "sensor_readings"])(
  "migrate up beside the %s tables in public",
  (shape) => {
    it("installs telemetry_jobs only: the catalog of public is identical, every DDL is in telemetry_jobs", async () => {
      t = await createTestDatabase({ migrated: false });
      await createLegacyTable(t.pool, legacyTable(shape, "public"), 2_000, 60);
      const before = await schemaCatalog(t.url, "public");
      const ddl = await recordDdl(t.url);

      const up = await runCli(["migrate", "up"], { DATABASE_URL: t.url });
      expect(up.code, `${JSON.stringify(up.lines, null, 1)}\n${up.stderr}`).toBe(0);
      expect(await schemaCatalog(t.url, "public")).toEqual(before);
      const commands = await ddl.commands();
      expect(commands.length).toBeGreaterThan(0);
      expect(ddlOutside(commands, "telemetry_jobs")).toEqual([]);

      // The bookkeeping the jobs need is there.
      const bookkeeping = await t.pool.query(
        `SELECT count(*)::int AS n FROM pg_class
        WHERE relnamespace = 'telemetry_jobs'::regnamespace
          AND relname IN ('job_runs', 'job_actions', 'retention_holds', 'rollup_watermarks', 'conversions', 'rollup_changes')`,
      );
      expect(bookkeeping.rows[0].n).toBe(6);

      const status = await runCli(["migrate", "status"], { DATABASE_URL: t.url });
      expect(status.code).toBe(0);
      const messages = status.lines.map((l) => l.message);
      expect(messages.filter((m) => m.startsWith("pending"))).toEqual([]);
      expect(messages).toContain(
        "starter schema not installed (migrate up --with-starter-schema makes it, for a new project)",
      );

      // A second run has nothing to do.
      const again = await runCli(["migrate", "up"], { DATABASE_URL: t.url });
      expect(again.code).toBe(0);
      expect(await schemaCatalog(t.url, "public")).toEqual(before);
    });

    it("migrate up --with-starter-schema fails on the application's tables and changes nothing in public", async () => {
      t = await createTestDatabase({ migrated: false });
      await createLegacyTable(t.pool, legacyTable(shape, "public"), 500, 30);
      const before = await schemaCatalog(t.url, "public");
      const up = await runCli(["migrate", "up", "--with-starter-schema"], { DATABASE_URL: t.url });
      expect(up.code).toBe(1);
      expect(JSON.stringify(up.lines)).toContain('relation \\"devices\\" already exists');
      expect(await schemaCatalog(t.url, "public")).toEqual(before);
    });
  },
);
