// The starter telemetry schema's migrations: tables in schema public for a new project that has
// none of its own (and the demo), applied only by `migrate up --with-starter-schema`, after the
// product's migrations. Their history is their own, telemetry_jobs.kysely_starter_migration, so a
// database without the starter schema records none of them. Listed here, not read from a folder: a
// bundled job has no folder to read. Append only; never rename or edit one that has shipped.
import type { Migration } from "kysely/migration";
import * as s0001 from "./0001_tables.ts";
import * as s0002 from "./0002_ingest_xid.ts";
import * as s0003 from "./0003_hourly_series.ts";

export const STARTER_MIGRATIONS: Readonly<Record<string, Migration>> = Object.freeze({
  starter_0001_tables: s0001,
  starter_0002_ingest_xid: s0002,
  starter_0003_hourly_series: s0003,
});
