// The migrations exactly as release 0007 shipped them (0001-0007, the starter telemetry tables made
// by 0002, 0004 and 0007 in schema public), frozen here so that a test can build a database the way
// that release left it and upgrade it with the current migrations. Never edit these files.
import type { Kysely } from "kysely";
import { type Migration, Migrator } from "kysely/migration";
import * as m0001 from "./0001_bookkeeping.ts";
import * as m0002 from "./0002_telemetry_schema.ts";
import * as m0003 from "./0003_retention_holds.ts";
import * as m0004 from "./0004_rollups.ts";
import * as m0005 from "./0005_refused_runs.ts";
import * as m0006 from "./0006_conversions.ts";
import * as m0007 from "./0007_rollup_changes.ts";

export const RELEASE_0007_MIGRATIONS: Readonly<Record<string, Migration>> = Object.freeze({
  "0001_bookkeeping": m0001,
  "0002_telemetry_schema": m0002,
  "0003_retention_holds": m0003,
  "0004_rollups": m0004,
  "0005_refused_runs": m0005,
  "0006_conversions": m0006,
  "0007_rollup_changes": m0007,
});

/** The Migrator as release 0007 configured it: one history, telemetry_jobs.kysely_migration. */
export function createRelease0007Migrator(db: Kysely<any>): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: async () => ({ ...RELEASE_0007_MIGRATIONS }) },
    migrationTableSchema: "telemetry_jobs",
  });
}
