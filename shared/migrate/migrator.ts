// Kysely's Migrator over the static migration list. Its lock table (in our bookkeeping schema)
// serialises concurrent `migrate` runs, e.g. two deploys racing.
import type { Kysely } from "kysely";
import { type MigrationResultSet, Migrator } from "kysely/migration";
import { MIGRATIONS } from "../../migrations/index.ts";

export const BOOKKEEPING_SCHEMA = "telemetry_jobs";

export function createMigrator(db: Kysely<any>): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: async () => ({ ...MIGRATIONS }) },
    migrationTableSchema: BOOKKEEPING_SCHEMA,
  });
}

export interface MigrationStatus {
  name: string;
  executedAt: Date | undefined;
}

export async function migrationStatus(db: Kysely<any>): Promise<MigrationStatus[]> {
  const list = await createMigrator(db).getMigrations();
  return list.map((m) => ({ name: m.name, executedAt: m.executedAt }));
}

/** Throws with the failing migration named; Kysely reports per-migration results. */
export function throwIfFailed(result: MigrationResultSet): void {
  if (result.error === undefined) return;
  const failed = result.results?.find((r) => r.status === "Error");
  const cause = result.error instanceof Error ? result.error : new Error(String(result.error));
  throw new Error(`migration ${failed?.migrationName ?? "(unknown)"} failed: ${cause.message}`, { cause });
}
