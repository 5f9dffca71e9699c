// Kysely's Migrator over the static migration lists. Two sets, each with its own history table in
// the bookkeeping schema:
//   product   telemetry_jobs only (bookkeeping, functions); history telemetry_jobs.kysely_migration.
//             `migrate up` applies it, always.
//   starter   the starter telemetry tables in public, for a new project and the demo; history
//             telemetry_jobs.kysely_starter_migration. Only on request (--with-starter-schema),
//             after the product set (its read function uses the product's rollup state).
// The migrator's lock (a PostgreSQL advisory lock) serialises concurrent `migrate` runs, e.g. two
// deploys racing.
import { type Kysely, sql } from "kysely";
import { type Migration, type MigrationResult, type MigrationResultSet, Migrator } from "kysely/migration";
import { MIGRATIONS } from "../../migrations/index.ts";
import { STARTER_MIGRATIONS } from "../../migrations/starter/index.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";

export const BOOKKEEPING_SCHEMA = "telemetry_jobs";

export type MigrationSet = "product" | "starter";

const SETS: Record<
  MigrationSet,
  { migrations: Readonly<Record<string, Migration>>; table: string; lock: string }
> = {
  product: { migrations: MIGRATIONS, table: "kysely_migration", lock: "kysely_migration_lock" },
  starter: {
    migrations: STARTER_MIGRATIONS,
    table: "kysely_starter_migration",
    lock: "kysely_starter_migration_lock",
  },
};

export function createMigrator(db: Kysely<any>, set: MigrationSet = "product"): Migrator {
  const { migrations, table, lock } = SETS[set];
  return new Migrator({
    db,
    provider: { getMigrations: async () => ({ ...migrations }) },
    migrationTableSchema: BOOKKEEPING_SCHEMA,
    migrationTableName: table,
    migrationLockTableName: lock,
  });
}

export interface MigrationStatus {
  name: string;
  executedAt: Date | undefined;
}

export async function migrationStatus(
  db: Kysely<any>,
  set: MigrationSet = "product",
): Promise<MigrationStatus[]> {
  const list = await createMigrator(db, set).getMigrations();
  return list.map((m) => ({ name: m.name, executedAt: m.executedAt }));
}

/**
 * Applies every pending product migration, then, with `starterSchema`, every pending starter one.
 * Throws at the first failure (that set's run is rolled back whole); returns what ran.
 */
export async function migrateToLatest(
  db: Kysely<any>,
  options: { starterSchema: boolean },
): Promise<MigrationResult[]> {
  const product = await createMigrator(db, "product").migrateToLatest();
  throwIfFailed(product);
  if (!options.starterSchema) return [...(product.results ?? [])];
  const starter = await createMigrator(db, "starter").migrateToLatest();
  throwIfFailed(starter);
  return [...(product.results ?? []), ...(starter.results ?? [])];
}

/** Throws with the failing migration named; Kysely reports per-migration results. */
export function throwIfFailed(result: MigrationResultSet): void {
  if (result.error === undefined) return;
  const failed = result.results?.find((r) => r.status === "Error");
  const cause = result.error instanceof Error ? result.error : new Error(String(result.error));
  throw new Error(`migration ${failed?.migrationName ?? "(unknown)"} failed: ${cause.message}`, { cause });
}

/**
 * Why the database's bookkeeping schema cannot serve this build's jobs, or undefined when it can:
 * missing, or behind (product migrations this build bundles that it has not applied). A job must
 * not start on a schema that lacks what it writes: a missing column or a narrower CHECK fails a
 * run only when it first needs it (0011's 'abandoned' status: the first run after a killed one),
 * then every run. One round trip; the migrator's own status reads take several.
 */
export async function bookkeepingProblem(db: Kysely<any>): Promise<string | undefined> {
  const history = sql.id(BOOKKEEPING_SCHEMA, SETS.product.table);
  let applied: Set<string>;
  try {
    const r = await sql<{ name: string }>`SELECT name FROM ${history}`.execute(db);
    applied = new Set(r.rows.map((row) => row.name));
  } catch (error) {
    if (sqlState(error) !== SQLSTATE.undefinedTable) throw error;
    return `the ${BOOKKEEPING_SCHEMA} bookkeeping schema is missing: run \`telemetry-jobs migrate up\` first`;
  }
  const missing = Object.keys(SETS.product.migrations).filter((name) => !applied.has(name));
  if (missing.length === 0) return undefined;
  return `the ${BOOKKEEPING_SCHEMA} bookkeeping schema is behind this build: ${missing.join(", ")} not applied. Run \`telemetry-jobs migrate up\` (the migrate job) first, then this job again; until then it does nothing`;
}
