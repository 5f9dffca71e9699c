// What a restore will do, decided before anything is written: which relation the rows go to, and
// every reason to refuse (exit 2, nothing written). The decision over the catalog is pure
// (decideAttach); the reads that feed it are below it.
import { type Kysely, sql } from "kysely";
import { displayRelation, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { BOUND_CONSTRAINT } from "../partitions/apply.ts";
import { boundRange } from "../partitions/bounds.ts";
import type { TableCatalog } from "../partitions/catalog.ts";
import type { Manifest } from "./manifest.ts";
import { type RelationKind, relationKind } from "./restore-load.ts";

/** Refused before anything was written: exit 2. */
export class RestoreRefused extends Error {
  override readonly name = "RestoreRefused";
}

/** The partition's bounds from the manifest, as Dates (bounds are whole milliseconds or finer is refused). */
export function manifestBounds(manifest: Manifest): { from: Date; to: Date } {
  const ms = (micros: string, what: string) => {
    const value = BigInt(micros);
    if (value % 1000n !== 0n)
      throw new RestoreRefused(`the manifest's ${what} bound ${micros} µs is not whole milliseconds`);
    return new Date(Number(value / 1000n));
  };
  return { from: ms(manifest.partition.from.micros, "lower"), to: ms(manifest.partition.to.micros, "upper") };
}

/**
 * What has the target's name: nothing; a partition of the table; the empty standalone table
 * (carrying the bound constraint, not attached) the partition library leaves when it is killed
 * between making a partition and attaching it; or anything else.
 */
export type TargetState = "absent" | "child" | "standalone" | "other";

/** Facts about the target the pure decision needs, read from the database. */
export interface AttachFacts {
  catalog: TableCatalog;
  target: TargetState;
  /** When the target is a partition of the table or a leftover standalone table: whether it holds rows. */
  targetHasRows: boolean;
  staging: RelationKind;
}

export interface AttachDecision {
  kind: "attach";
  /** The target is an empty partition of exactly the range: the attach takes its place. */
  replaceEmpty: boolean;
  /** The target's name holds the library's empty standalone leftover, which the restore drops first. */
  dropLeftover: boolean;
  /** Rows of the range in DEFAULT, which the attach moves into the partition. */
  defaultRows: number;
}

/**
 * Attach mode: refuses when any live child overlaps [from, to), except an empty partition of
 * exactly the range under the target's name (partition-manager fills gaps between partitions with
 * empty ones), which the restored table replaces in the attach transaction; when the target name
 * is taken by any other relation than that or the library's empty leftover; or when the staging
 * name is taken by a table not made by a restore. Rows of the range in DEFAULT do not refuse: the
 * attach moves them into the partition beside the restored rows (they arrived after the export;
 * leaving them in DEFAULT would make the attach fail).
 */
export function decideAttach(
  facts: AttachFacts,
  target: Relation,
  staging: Relation,
  range: { from: Date; to: Date },
): AttachDecision {
  const from = range.from.getTime();
  const to = range.to.getTime();
  let replaceEmpty = false;
  for (const child of facts.catalog.children) {
    const r = boundRange(child.bound);
    if (!r || r.to <= from || to <= r.from) continue;
    const exact =
      r.from === from && r.to === to && child.schema === target.schema && child.name === target.name;
    if (exact && !facts.targetHasRows) {
      replaceEmpty = true;
      continue;
    }
    throw new RestoreRefused(
      `the range [${range.from.toISOString()}, ${range.to.toISOString()}) is covered by the live partition ` +
        `${displayRelation(child)} (${child.boundText})${exact ? ", which holds rows" : ""}; ` +
        "restore into a schema for inspection with --into, or detach that partition first",
    );
  }
  const dropLeftover = facts.target === "standalone" && !facts.targetHasRows;
  if (!replaceEmpty && !dropLeftover && facts.target !== "absent")
    throw new RestoreRefused(
      `${displayRelation(target)} already exists and is not an empty leftover of the partition library; rename or drop it, or use --into`,
    );
  if (facts.staging === "other")
    throw new RestoreRefused(
      `${displayRelation(staging)} exists and was not made by a restore; rename or drop it`,
    );
  const defaultRows = facts.catalog.defaultBuckets
    .filter((b) => b.start.getTime() >= from && b.start.getTime() < to)
    .reduce((n, b) => n + b.rows, 0);
  return { kind: "attach", replaceEmpty, dropLeftover, defaultRows };
}

/** What has the target's name (see TargetState). */
export async function targetState(
  db: Kysely<DB>,
  target: Relation,
  catalog: TableCatalog,
): Promise<TargetState> {
  if (catalog.children.some((c) => c.schema === target.schema && c.name === target.name)) return "child";
  const r = await sql<{ partition: boolean; bound: boolean; comment: string | null }>`
    SELECT c.relispartition AS partition, obj_description(c.oid, 'pg_class') AS comment,
           EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                    WHERE k.conrelid = c.oid AND k.conname = ${BOUND_CONSTRAINT}) AS bound
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${target.schema} AND c.relname = ${target.name} AND c.relkind = 'r'`.execute(db);
  const row = r.rows[0];
  if (!row) return (await relationKind(db, target)) === "absent" ? "absent" : "other";
  // A table retention detached carries the bound constraint too; the library never re-attaches it.
  const detached = row.comment?.startsWith("telemetry-jobs retention:") ?? false;
  return !row.partition && row.bound && !detached ? "standalone" : "other";
}

/** Not FROM ONLY: a partition that is itself partitioned holds its rows in its own partitions. */
export async function hasRows(db: Kysely<DB>, rel: Relation): Promise<boolean> {
  const r = await sql<{ has: boolean }>`
    SELECT EXISTS (SELECT 1 FROM ${relationSql(rel)}) AS has`.execute(db);
  return r.rows[0]?.has === true;
}

/** The manifest's columns must all be in the table with the same types; the table may have more. */
export async function checkColumns(db: Kysely<DB>, table: Relation, manifest: Manifest): Promise<void> {
  const r = await sql<{ name: string; type: string }>`
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname = ${table.name} AND a.attnum > 0 AND NOT a.attisdropped`.execute(
    db,
  );
  const types = new Map(r.rows.map((row) => [row.name, row.type]));
  for (const c of manifest.columns) {
    const type = types.get(c.name);
    if (type !== c.pgType)
      throw new RestoreRefused(
        `column "${c.name}" was ${c.pgType} when exported; ${displayRelation(table)} ${type === undefined ? "no longer has it" : `has it as ${type}`}. Restore with --into to inspect the rows`,
      );
  }
}

/** --into: the schema must exist, the target name must be free, the staging name free or ours. */
export async function checkInto(db: Kysely<DB>, target: Relation, staging: Relation): Promise<void> {
  const schema = await sql<{ ok: boolean }>`
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ${target.schema}) AS ok`.execute(db);
  if (!schema.rows[0]?.ok)
    throw new RestoreRefused(`schema ${target.schema} does not exist; create it first`);
  if ((await relationKind(db, target)) !== "absent")
    throw new RestoreRefused(`${displayRelation(target)} already exists; choose another schema or drop it`);
  if ((await relationKind(db, staging)) === "other")
    throw new RestoreRefused(
      `${displayRelation(staging)} exists and was not made by a restore; rename or drop it`,
    );
}
