// Reads what hangs on a table for `migrate convert`: foreign keys pointing at it, views, triggers
// (rollup-hourly's change triggers apart), rules, publications, owned sequences and grants.
// Names come back as PostgreSQL renders them, ready to paste into psql. Read-only.
import { type Kysely, sql } from "kysely";
import { type Relation, relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { CHANGE_FUNCTION, CHANGE_TRIGGERS } from "../rollups/changes.ts";
import type { ChangeTriggerFacts, Grant, ObjectRef, OwnedSequence, TableFacts } from "./facts.ts";

type Dependents = Pick<
  TableFacts,
  "incomingForeignKeys" | "dependentViews" | "triggers" | "rules" | "publications"
>;

/** pg_trigger row `t` is one of rollup-hourly's change triggers: its name and its function (never NULL). */
const isChangeTrigger = sql`coalesce(t.tgname = ANY(${CHANGE_TRIGGERS.map((c) => c.name)}::text[])
  AND t.tgfoid = (SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = ${CHANGE_FUNCTION.schema} AND p.proname = ${CHANGE_FUNCTION.name}
                     AND p.pronargs = 0), false)`;

export async function readDependents(db: Kysely<DB>, oid: number): Promise<Dependents> {
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
  const rules = await sql<ObjectRef>`
    SELECT 'rule' AS kind, quote_ident(r.rulename) || ' ON ' || r.ev_class::regclass::text AS name,
           NULL::text AS detail
      FROM pg_rewrite r WHERE r.ev_class = ${oid} AND r.rulename <> '_RETURN' ORDER BY r.rulename`.execute(
    db,
  );
  return {
    incomingForeignKeys: incoming.rows,
    dependentViews: views.rows,
    triggers: triggers.rows,
    rules: rules.rows,
    publications: await readPublications(db, oid),
  };
}

async function readPublications(db: Kysely<DB>, oid: number): Promise<ObjectRef[]> {
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
  return publications.rows;
}

async function hasCatalog(db: Kysely<DB>, name: string): Promise<boolean> {
  const r = await sql<{ ok: boolean }>`
    SELECT ${relationOidSql({ schema: "pg_catalog", name })} IS NOT NULL AS ok`.execute(db);
  return r.rows[0]?.ok === true;
}

/** serial-style sequences: owned by a column (deptype 'a'); identity sequences are 'i'. */
export async function readOwnedSequences(db: Kysely<DB>, oid: number): Promise<OwnedSequence[]> {
  const owned = await sql<OwnedSequence>`
    SELECT d.objid::regclass::text AS sequence, a.attname AS column
      FROM pg_depend d
      JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = ${oid} AND d.deptype = 'a'
     ORDER BY 1`.execute(db);
  return owned.rows;
}

/** Table privileges granted to others than the owner; grantees quote_ident'ed, or PUBLIC. */
export async function readGrants(db: Kysely<DB>, oid: number): Promise<Grant[]> {
  const grants = await sql<Grant>`
    SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END AS grantee,
           g.privilege_type AS privilege, g.is_grantable AS grantable
      FROM pg_class c, aclexplode(c.relacl) g
     WHERE c.oid = ${oid} AND g.grantee <> c.relowner
     ORDER BY 1, 2`.execute(db);
  return grants.rows;
}

/** rollup-hourly's change triggers on the relation (none when it does not exist). */
export async function readChangeTriggers(db: Kysely<DB>, relation: Relation): Promise<ChangeTriggerFacts[]> {
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
