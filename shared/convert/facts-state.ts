// Reads how far a conversion got: its row in telemetry_jobs.conversions, and what of it the
// catalog shows (our CHECK, the indexes prepare builds, the new parent, the attached history).
// Read-only.
import { type Kysely, sql } from "kysely";
import type { Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { ConversionState } from "./facts.ts";
import { CONVERT_BOUND_CONSTRAINT, type ConvertNames } from "./names.ts";
import { tableKey } from "./step.ts";

type BuiltIndexes = ConversionState["builtIndexes"];

export async function readConversionState(
  db: Kysely<DB>,
  table: Relation,
  names: ConvertNames,
): Promise<ConversionState> {
  const rec = await sql<NonNullable<ConversionState["record"]>>`
    SELECT phase, boundary, plan FROM telemetry_jobs.conversions WHERE table_name = ${tableKey(table)}`.execute(
    db,
  );
  return {
    record: rec.rows[0] ?? null,
    boundCheck: await readBoundCheck(db, table, names),
    builtIndexes: await readBuiltIndexes(db, table.schema, [
      names.newKeyIndex,
      names.oldKeyIndex,
      names.ingestIndex,
    ]),
    ...(await readShape(db, table, names)),
  };
}

/** Our CHECK, on the table or (after the swap) on the historical partition. */
async function readBoundCheck(
  db: Kysely<DB>,
  table: Relation,
  names: ConvertNames,
): Promise<ConversionState["boundCheck"]> {
  const check = await sql<{ validated: boolean }>`
    SELECT k.convalidated AS validated
      FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname IN (${table.name}, ${names.history})
       AND c.relkind = 'r' AND k.conname = ${CONVERT_BOUND_CONSTRAINT}`.execute(db);
  const found = check.rows[0];
  if (found === undefined) return "absent";
  return found.validated ? "valid" : "not-valid";
}

async function readBuiltIndexes(db: Kysely<DB>, schema: string, wanted: string[]): Promise<BuiltIndexes> {
  const idx = await sql<{ name: string; valid: boolean }>`
    SELECT c.relname AS name, (x.indisvalid AND x.indisready) AS valid
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indexrelid = c.oid
     WHERE n.nspname = ${schema} AND c.relname = ANY(${wanted})`.execute(db);
  const builtIndexes: BuiltIndexes = {};
  for (const w of wanted) {
    const found = idx.rows.find((r) => r.name === w);
    builtIndexes[w] = !found ? "absent" : found.valid ? "valid" : "invalid";
  }
  return builtIndexes;
}

/** Whether the new parent exists, and whether the table is partitioned with the history attached. */
async function readShape(
  db: Kysely<DB>,
  table: Relation,
  names: ConvertNames,
): Promise<Pick<ConversionState, "parentExists" | "historyAttached">> {
  const rels = await sql<{ relname: string; relkind: string; parent: string | null }>`
    SELECT c.relname, c.relkind::text AS relkind,
           (SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid) AS parent
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname IN (${table.name}, ${names.parent}, ${names.history})`.execute(
    db,
  );
  const byName = new Map(rels.rows.map((r) => [r.relname, r]));
  return {
    parentExists: byName.get(names.parent)?.relkind === "p",
    historyAttached:
      byName.get(table.name)?.relkind === "p" && byName.get(names.history)?.parent === table.name,
  };
}

/** Which of these names (relations or indexes in the schema) already exist. */
export async function existingRelations(
  db: Kysely<DB>,
  schema: string,
  candidates: readonly string[],
): Promise<string[]> {
  if (candidates.length === 0) return [];
  const r = await sql<{ relname: string }>`
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${schema} AND c.relname = ANY(${[...candidates]}) ORDER BY 1`.execute(db);
  return r.rows.map((x) => x.relname);
}
