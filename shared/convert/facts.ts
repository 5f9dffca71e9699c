// Everything `migrate convert` needs to know about a table, read from the catalog in one place:
// what preflight reports, what the planner decides from, and how far an earlier (possibly killed)
// run got. Read-only; cheap catalog queries plus min/max of the time column (an index scan when
// the column is indexed) and a count of rows at or beyond the boundary.
import { type Kysely, sql } from "kysely";
import type { QualifiedName } from "../config/identifiers.ts";
import "../db/pg-types.ts";
import { quoteRelation } from "../db/quote.ts";
import { type Relation, relationOidSql } from "../db/relation.ts";
import { CHANGE_FUNCTION, CHANGE_TRIGGERS } from "../rollups/changes.ts";
import { CONVERT_BOUND_CONSTRAINT, type ConvertNames } from "./names.ts";

export interface ColumnFacts {
  name: string;
  type: string;
  notNull: boolean;
  /** "" none, "a" GENERATED ALWAYS, "d" BY DEFAULT. */
  identity: "" | "a" | "d";
  /** The identity's sequence (qualified, quoted as PostgreSQL prints it), when identity is set. */
  identitySequence: string | null;
  defaultExpr: string | null;
  generated: boolean;
  hasColumnGrants: boolean;
}

export interface ConstraintFacts {
  name: string;
  /** p primary key, u unique, f foreign key, c check, x exclusion, t constraint trigger. */
  /** n: NOT NULL (catalogued as a constraint from PostgreSQL 18). */
  type: "p" | "u" | "f" | "c" | "x" | "t" | "n";
  columns: string[];
  definition: string;
  validated: boolean;
  noInherit: boolean;
  /** The index behind a p/u/x constraint. */
  indexName: string | null;
}

export interface IndexFacts {
  name: string;
  unique: boolean;
  primary: boolean;
  /** Set when the index backs a constraint (primary key, unique, exclusion). */
  constraintName: string | null;
  valid: boolean;
  columns: string[];
  /** pg_get_indexdef: "CREATE [UNIQUE] INDEX name ON schema.table USING method (...) [WHERE ...]". */
  definition: string;
  /** The part from " USING " on: the same on any table with these columns. */
  body: string;
}

export interface ObjectRef {
  /** What it is ("foreign key", "view", "trigger"...). */
  kind: string;
  /** Qualified name, ready to paste into psql. */
  name: string;
  detail?: string;
}

/**
 * One of rollup-hourly's two change-tracking triggers (shared/rollups/changes.ts), recognised by
 * its name and its function, telemetry_jobs.record_rollup_changes. Convert moves these with the
 * table instead of refusing it.
 */
export interface ChangeTriggerFacts {
  name: string;
  /** The trigger's arguments as stored (the time column, the group column). */
  args: string[];
  /** pg_trigger.tgenabled: O fires, D disabled, R only as a replica, A always. */
  enabled: "O" | "D" | "R" | "A";
}

export interface OwnedSequence {
  sequence: string;
  column: string;
}

export interface Grant {
  grantee: string;
  privilege: string;
  grantable: boolean;
}

export interface TableFacts {
  table: QualifiedName;
  exists: boolean;
  /** r plain, p partitioned, f foreign, v view... */
  relkind: string;
  isPartition: boolean;
  inheritance: boolean;
  persistence: "p" | "u" | "t";
  owner: string;
  comment: string | null;
  replicaIdentity: "d" | "n" | "f" | "i";
  rowSecurity: boolean;
  /** pg_class.reltuples: -1 when the table was never vacuumed or analyzed. */
  rowEstimate: number;
  totalBytes: number;
  columns: ColumnFacts[];
  constraints: ConstraintFacts[];
  indexes: IndexFacts[];
  incomingForeignKeys: ObjectRef[];
  dependentViews: ObjectRef[];
  /** Triggers, rollup-hourly's change triggers excepted (those are in changeTriggers). */
  triggers: ObjectRef[];
  changeTriggers: ChangeTriggerFacts[];
  rules: ObjectRef[];
  publications: ObjectRef[];
  ownedSequences: OwnedSequence[];
  grants: Grant[];
  /** Time range of the rows (null when the table is empty). */
  minTime: Date | null;
  maxTime: Date | null;
  /** Rows at or beyond the boundary being considered (they cannot go into the historical partition). */
  rowsAtOrAfterBoundary: number;
}

/** How far the conversion got, from the bookkeeping row and the catalog. */
export interface ConversionState {
  record: {
    phase: "preparing" | "prepared" | "swapped" | "reverted" | "finalized";
    boundary: Date;
    plan: unknown;
  } | null;
  /** Our CHECK on the old table: absent, NOT VALID, or valid. */
  boundCheck: "absent" | "not-valid" | "valid";
  /** Indexes telemetry-jobs builds on the old table, by name: absent, invalid (a killed build) or valid. */
  builtIndexes: Record<string, "absent" | "invalid" | "valid">;
  /** The new partitioned parent exists (before the swap, under its temporary name). */
  parentExists: boolean;
  /** After the swap: the table is partitioned and the historical partition is attached to it. */
  historyAttached: boolean;
}

export async function readTableFacts(
  db: Kysely<any>,
  table: QualifiedName,
  timeColumn: string,
  boundary: Date | null,
): Promise<TableFacts> {
  const rel = quoteRelation(table);
  const base = await sql<{
    oid: number;
    relkind: string;
    relispartition: boolean;
    inheritance: boolean;
    relpersistence: "p" | "u" | "t";
    owner: string;
    comment: string | null;
    relreplident: "d" | "n" | "f" | "i";
    relrowsecurity: boolean;
    reltuples: number;
    bytes: number;
  }>`
    SELECT c.oid::int AS oid, c.relkind::text AS relkind, c.relispartition,
           EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) AS inheritance,
           c.relpersistence::text AS relpersistence, pg_get_userbyid(c.relowner) AS owner,
           obj_description(c.oid, 'pg_class') AS comment, c.relreplident::text AS relreplident,
           c.relrowsecurity, c.reltuples::float8 AS reltuples,
           pg_total_relation_size(c.oid)::float8 AS bytes
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname = ${table.name}`.execute(db);
  const row = base.rows[0];
  const empty: TableFacts = {
    table,
    exists: false,
    relkind: "",
    isPartition: false,
    inheritance: false,
    persistence: "p",
    owner: "",
    comment: null,
    replicaIdentity: "d",
    rowSecurity: false,
    rowEstimate: 0,
    totalBytes: 0,
    columns: [],
    constraints: [],
    indexes: [],
    incomingForeignKeys: [],
    dependentViews: [],
    triggers: [],
    changeTriggers: [],
    rules: [],
    publications: [],
    ownedSequences: [],
    grants: [],
    minTime: null,
    maxTime: null,
    rowsAtOrAfterBoundary: 0,
  };
  if (!row) return empty;
  const oid = row.oid;

  const columns = await sql<ColumnFacts>`
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
           a.attidentity::text AS identity,
           CASE WHEN a.attidentity <> '' THEN pg_get_serial_sequence(${rel}, a.attname) END AS "identitySequence",
           pg_get_expr(d.adbin, d.adrelid) AS "defaultExpr", a.attgenerated <> '' AS generated,
           a.attacl IS NOT NULL AS "hasColumnGrants"
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = ${oid} AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum`.execute(db);

  const constraints = await sql<ConstraintFacts>`
    SELECT k.conname AS name, k.contype::text AS type,
           coalesce((SELECT array_agg(a.attname::text ORDER BY o.ord)
                       FROM unnest(k.conkey) WITH ORDINALITY AS o(attnum, ord)
                       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = o.attnum), '{}') AS columns,
           pg_get_constraintdef(k.oid) AS definition, k.convalidated AS validated, k.connoinherit AS "noInherit",
           CASE WHEN k.conindid <> 0 THEN (SELECT relname FROM pg_class WHERE oid = k.conindid) END AS "indexName"
      FROM pg_constraint k
     WHERE k.conrelid = ${oid} AND k.contype IN ('p', 'u', 'f', 'c', 'x', 't', 'n')
     ORDER BY k.conname`.execute(db);

  const indexes = await sql<Omit<IndexFacts, "body"> & { tableRef: string }>`
    SELECT ic.relname AS name, x.indisunique AS unique, x.indisprimary AS primary,
           (SELECT conname FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid) AS "constraintName",
           (x.indisvalid AND x.indisready) AS valid,
           coalesce((SELECT array_agg(coalesce(a.attname::text, '(expression)') ORDER BY o.ord)
                       FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS o(attnum, ord)
                       LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = o.attnum
                      WHERE o.ord <= x.indnkeyatts), '{}') AS columns,
           pg_get_indexdef(x.indexrelid) AS definition, x.indrelid::regclass::text AS "tableRef"
      FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
     WHERE x.indrelid = ${oid}
     ORDER BY ic.relname`.execute(db);

  const incoming = await sql<ObjectRef>`
    SELECT 'foreign key' AS kind, k.conrelid::regclass::text || '.' || quote_ident(k.conname) AS name,
           pg_get_constraintdef(k.oid) AS detail
      FROM pg_constraint k
     WHERE k.confrelid = ${oid} AND k.contype = 'f' AND k.conrelid <> ${oid}
     ORDER BY 2`.execute(db);

  const views = await sql<ObjectRef>`
    SELECT DISTINCT CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END AS kind,
           v.oid::regclass::text AS name, NULL::text AS detail
      FROM pg_depend d
      JOIN pg_rewrite w ON w.oid = d.objid
      JOIN pg_class v ON v.oid = w.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = ${oid} AND v.oid <> ${oid}
     ORDER BY 2`.execute(db);

  const triggers = await sql<ObjectRef>`
    SELECT 'trigger' AS kind, quote_ident(t.tgname) || ' ON ' || t.tgrelid::regclass::text AS name,
           pg_get_triggerdef(t.oid) AS detail
      FROM pg_trigger t WHERE t.tgrelid = ${oid} AND NOT t.tgisinternal AND NOT ${isChangeTrigger}
     ORDER BY t.tgname`.execute(db);
  const changeTriggers = await readChangeTriggers(db, table);

  const rules = await sql<ObjectRef>`
    SELECT 'rule' AS kind, quote_ident(r.rulename) || ' ON ' || r.ev_class::regclass::text AS name,
           NULL::text AS detail
      FROM pg_rewrite r WHERE r.ev_class = ${oid} AND r.rulename <> '_RETURN' ORDER BY r.rulename`.execute(
    db,
  );

  const publications = await sql<ObjectRef>`
    SELECT 'publication' AS kind, quote_ident(p.pubname) AS name, NULL::text AS detail
      FROM pg_publication p
     WHERE p.puballtables OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = ${oid})
     ORDER BY p.pubname`.execute(db);
  if (await hasCatalog(db, "pg_publication_namespace")) {
    // PostgreSQL 15+: FOR TABLES IN SCHEMA.
    const bySchema = await sql<ObjectRef>`
      SELECT 'publication' AS kind, quote_ident(p.pubname) AS name, 'FOR TABLES IN SCHEMA' AS detail
        FROM pg_publication p JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid
       WHERE pn.pnnspid = (SELECT relnamespace FROM pg_class WHERE oid = ${oid})`.execute(db);
    publications.rows.push(...bySchema.rows);
  }

  // serial-style sequences: owned by a column (deptype 'a'); identity sequences are 'i'.
  const owned = await sql<OwnedSequence>`
    SELECT d.objid::regclass::text AS sequence, a.attname AS column
      FROM pg_depend d
      JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = ${oid} AND d.deptype = 'a'
     ORDER BY 1`.execute(db);

  const grants = await sql<Grant>`
    SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END AS grantee,
           g.privilege_type AS privilege, g.is_grantable AS grantable
      FROM pg_class c, aclexplode(c.relacl) g
     WHERE c.oid = ${oid} AND g.grantee <> c.relowner
     ORDER BY 1, 2`.execute(db);

  let minTime: Date | null = null;
  let maxTime: Date | null = null;
  let rowsAtOrAfterBoundary = 0;
  const timeCol = columns.rows.find((c) => c.name === timeColumn);
  if (timeCol && (row.relkind === "r" || row.relkind === "p")) {
    const col = sql.ref(timeColumn);
    const range = await sql<{ lo: Date | null; hi: Date | null }>`
      SELECT (SELECT ${col} FROM ${sql.raw(rel)} WHERE ${col} IS NOT NULL ORDER BY ${col} LIMIT 1) AS lo,
             (SELECT ${col} FROM ${sql.raw(rel)} WHERE ${col} IS NOT NULL ORDER BY ${col} DESC LIMIT 1) AS hi`.execute(
      db,
    );
    minTime = range.rows[0]?.lo ?? null;
    maxTime = range.rows[0]?.hi ?? null;
    if (boundary && maxTime && maxTime.getTime() >= boundary.getTime()) {
      // A literal of the column's own type: a Date parameter would be sent in the process's time
      // zone, which a timestamp (without time zone) column would silently drop.
      const withZone = timeCol.type.startsWith("timestamp") && timeCol.type.includes("with time zone");
      const literal = sql.raw(
        `'${boundary
          .toISOString()
          .replace("T", " ")
          .replace("Z", withZone ? "+00" : "")}'::${withZone ? "timestamptz" : "timestamp"}`,
      );
      const n = await sql<{ n: number }>`
        SELECT count(*)::float8 AS n FROM ${sql.raw(rel)} WHERE ${col} >= ${literal}`.execute(db);
      rowsAtOrAfterBoundary = n.rows[0]?.n ?? 0;
    }
  }

  return {
    ...empty,
    exists: true,
    relkind: row.relkind,
    isPartition: row.relispartition,
    inheritance: row.inheritance,
    persistence: row.relpersistence,
    owner: row.owner,
    comment: row.comment,
    replicaIdentity: row.relreplident,
    rowSecurity: row.relrowsecurity,
    rowEstimate: row.reltuples,
    totalBytes: row.bytes,
    columns: columns.rows,
    constraints: constraints.rows,
    indexes: indexes.rows.map(({ tableRef, ...i }) => ({ ...i, body: indexBody(i.definition, tableRef) })),
    incomingForeignKeys: incoming.rows,
    dependentViews: views.rows,
    triggers: triggers.rows,
    changeTriggers,
    rules: rules.rows,
    publications: publications.rows,
    ownedSequences: owned.rows,
    grants: grants.rows,
    minTime,
    maxTime,
    rowsAtOrAfterBoundary,
  };
}

/** pg_trigger row `t` is one of rollup-hourly's change triggers: its name and its function (never NULL). */
const isChangeTrigger = sql`coalesce(t.tgname = ANY(${CHANGE_TRIGGERS.map((c) => c.name)}::text[])
  AND t.tgfoid = (SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = ${CHANGE_FUNCTION.schema} AND p.proname = ${CHANGE_FUNCTION.name}
                     AND p.pronargs = 0), false)`;

/** rollup-hourly's change triggers on the relation (none when it does not exist). */
export async function readChangeTriggers(db: Kysely<any>, relation: Relation): Promise<ChangeTriggerFacts[]> {
  const r = await sql<{ name: string; nargs: number; args: Buffer; enabled: ChangeTriggerFacts["enabled"] }>`
    SELECT t.tgname AS name, t.tgnargs::int AS nargs, t.tgargs AS args, t.tgenabled::text AS enabled
      FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid = ${relationOidSql(relation)} AND NOT t.tgisinternal AND ${isChangeTrigger}
     ORDER BY t.tgname`.execute(db);
  // tgargs: each argument followed by a NUL byte
  return r.rows.map((row) => ({
    name: row.name,
    args: row.args.toString("utf8").split("\0").slice(0, row.nargs),
    enabled: row.enabled,
  }));
}

/**
 * " USING btree (device_id, ts) WHERE ..." from a pg_get_indexdef result: what follows
 * "ON <table>" (an index name may itself contain " USING ").
 */
export function indexBody(definition: string, tableRef: string): string {
  const marker = ` ON ${tableRef} USING `;
  const on = definition.indexOf(marker);
  if (on >= 0) return definition.slice(on + marker.length - " USING ".length);
  const at = definition.indexOf(" USING ");
  return at < 0 ? definition : definition.slice(at);
}

async function hasCatalog(db: Kysely<any>, name: string): Promise<boolean> {
  const r = await sql<{ ok: boolean }>`SELECT to_regclass(${`pg_catalog.${name}`}) IS NOT NULL AS ok`.execute(
    db,
  );
  return r.rows[0]?.ok === true;
}

export async function readConversionState(
  db: Kysely<any>,
  table: QualifiedName,
  names: ConvertNames,
): Promise<ConversionState> {
  const qualified = `${table.schema}.${table.name}`;
  const rec = await sql<{
    phase: NonNullable<ConversionState["record"]>["phase"];
    boundary: Date;
    plan: unknown;
  }>`
    SELECT phase, boundary, plan FROM telemetry_jobs.conversions WHERE table_name = ${qualified}`.execute(db);

  const check = await sql<{ validated: boolean }>`
    SELECT k.convalidated AS validated
      FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname IN (${table.name}, ${names.history})
       AND c.relkind = 'r' AND k.conname = ${CONVERT_BOUND_CONSTRAINT}`.execute(db);

  const wanted = [names.newKeyIndex, names.oldKeyIndex, names.ingestIndex];
  const idx = await sql<{ name: string; valid: boolean }>`
    SELECT c.relname AS name, (x.indisvalid AND x.indisready) AS valid
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indexrelid = c.oid
     WHERE n.nspname = ${table.schema} AND c.relname = ANY(${wanted})`.execute(db);
  const builtIndexes: Record<string, "absent" | "invalid" | "valid"> = {};
  for (const w of wanted) {
    const found = idx.rows.find((r) => r.name === w);
    builtIndexes[w] = !found ? "absent" : found.valid ? "valid" : "invalid";
  }

  const rels = await sql<{ relname: string; relkind: string; parent: string | null }>`
    SELECT c.relname, c.relkind::text AS relkind,
           (SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid) AS parent
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname IN (${table.name}, ${names.parent}, ${names.history})`.execute(
    db,
  );
  const byName = new Map(rels.rows.map((r) => [r.relname, r]));
  const parentExists = byName.get(names.parent)?.relkind === "p";
  const historyAttached =
    byName.get(table.name)?.relkind === "p" && byName.get(names.history)?.parent === table.name;

  return {
    record: rec.rows[0] ?? null,
    boundCheck: check.rows.length === 0 ? "absent" : check.rows[0]!.validated ? "valid" : "not-valid",
    builtIndexes,
    parentExists,
    historyAttached,
  };
}

/** Which of these names (relations or indexes in the schema) already exist. */
export async function existingRelations(
  db: Kysely<any>,
  schema: string,
  candidates: readonly string[],
): Promise<string[]> {
  if (candidates.length === 0) return [];
  const r = await sql<{ relname: string }>`
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${schema} AND c.relname = ANY(${[...candidates]}) ORDER BY 1`.execute(db);
  return r.rows.map((x) => x.relname);
}
