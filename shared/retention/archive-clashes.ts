// Archive mode's name check, read with the retention facts: moving a partition into the archive
// schema fails when that schema already holds any name the move needs, so the planner keeps such
// partitions with a finding instead of failing mid-run.
import { type Kysely, sql } from "kysely";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";

/**
 * For each relation, the names that moving it into `archiveSchema` would need and that the schema
 * already holds. ALTER TABLE ... SET SCHEMA moves, under their own names, the table, its indexes,
 * the sequences it owns, and its row type and array type; any one of them taken there makes the move
 * fail (relations and types share the name check, so each name is looked up among both).
 */
export async function findArchiveClashes(
  db: Kysely<DB>,
  relations: readonly Relation[],
  archiveSchema: string,
): Promise<Map<string, string[]>> {
  const clashes = new Map<string, string[]>();
  if (relations.length === 0) return clashes;
  const r = await sql<{ schema: string; name: string; taken: string[] }>`
    SELECT n.nspname::text AS schema, c.relname::text AS name,
           array_agg(DISTINCT moved.name::text ORDER BY moved.name::text) AS taken
      FROM unnest(${relations.map((x) => x.schema)}::text[], ${relations.map((x) => x.name)}::text[]) AS want(schema, name)
      JOIN pg_catalog.pg_namespace n ON n.nspname = want.schema
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = want.name
      JOIN LATERAL (
             SELECT c.relname
             UNION ALL
             SELECT ic.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = c.oid
             UNION ALL
             SELECT s.relname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
                AND d.refobjid = c.oid AND d.deptype IN ('a', 'i') AND s.relkind = 'S'
             UNION ALL
             SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = c.reltype
             UNION ALL
             SELECT a.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type a ON a.oid = t.typarray
              WHERE t.oid = c.reltype
           ) AS moved(name) ON true
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class x JOIN pg_catalog.pg_namespace xn ON xn.oid = x.relnamespace
                    WHERE xn.nspname = ${archiveSchema} AND x.relname = moved.name)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_type y JOIN pg_catalog.pg_namespace yn ON yn.oid = y.typnamespace
                    WHERE yn.nspname = ${archiveSchema} AND y.typname = moved.name)
     GROUP BY 1, 2`.execute(db);
  for (const row of r.rows) clashes.set(displayRelation({ schema: row.schema, name: row.name }), row.taken);
  return clashes;
}
