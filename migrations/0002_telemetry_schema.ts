// Releases up to 0007 created the starter telemetry tables (public.devices, telemetry_points,
// telemetry_rollups_hourly) here. The product's migrations now create nothing outside
// telemetry_jobs: those tables are the starter schema's, installed only on request
// (`migrate up --with-starter-schema`, migrations/starter). This migration keeps its name because
// databases migrated by those releases recorded it, and the migrator refuses a history that names a
// migration it does not know; on a new database it does nothing.
import type { Kysely } from "kysely";

export async function up(_db: Kysely<unknown>): Promise<void> {}

export async function down(_db: Kysely<unknown>): Promise<void> {}
