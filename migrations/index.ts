// The product's migrations: only the telemetry_jobs schema (bookkeeping, functions, this history,
// telemetry_jobs.kysely_migration). Listed here, not read from a folder: a bundled job has no folder
// to read. Append only; never rename a migration that has shipped (a database that recorded it would
// no longer migrate). 0002, 0004 and 0007 were edited once, when the starter telemetry schema moved
// to its own migrations (./starter): a database that ran their earlier versions keeps what they
// made, and 0008 records it in the starter history.
import type { Migration } from "kysely/migration";
import * as m0001 from "./0001_bookkeeping.ts";
import * as m0002 from "./0002_telemetry_schema.ts";
import * as m0003 from "./0003_retention_holds.ts";
import * as m0004 from "./0004_rollups.ts";
import * as m0005 from "./0005_refused_runs.ts";
import * as m0006 from "./0006_conversions.ts";
import * as m0007 from "./0007_rollup_changes.ts";
import * as m0008 from "./0008_starter_schema_history.ts";
import * as m0009 from "./0009_hold_any_relation_name.ts";
import * as m0010 from "./0010_rollup_reads.ts";
import * as m0011 from "./0011_abandoned_runs.ts";

export const MIGRATIONS: Readonly<Record<string, Migration>> = Object.freeze({
  "0001_bookkeeping": m0001,
  "0002_telemetry_schema": m0002,
  "0003_retention_holds": m0003,
  "0004_rollups": m0004,
  "0005_refused_runs": m0005,
  "0006_conversions": m0006,
  "0007_rollup_changes": m0007,
  "0008_starter_schema_history": m0008,
  "0009_hold_any_relation_name": m0009,
  "0010_rollup_reads": m0010,
  "0011_abandoned_runs": m0011,
});
