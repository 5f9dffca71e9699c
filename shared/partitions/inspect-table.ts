// Whether a table can be managed as a policy says: it exists, is partitioned BY RANGE on the
// policy's time column alone, and that column is a timestamp. Read-only; one catalog query.
import { type Kysely, sql } from "kysely";
import type { QualifiedName } from "../config/identifiers.ts";
import { displayRelation } from "../db/relation.ts";
import type { KeyType } from "./catalog.ts";

/** Why a table cannot be managed as configured; the message names the fix. */
export interface TableProblem {
  /** The policy field at fault, as a path below tables[i] (e.g. "timeColumn", "rollup.target"). */
  readonly field: string;
  readonly message: string;
}

interface TableRow {
  oid: number;
  relkind: string;
  strategy: string | null;
  key_columns: string[] | null;
  key_type: string | null;
}

export async function inspectTable<DB>(
  db: Kysely<DB>,
  table: QualifiedName,
  timeColumn: string,
): Promise<{ ok: true; oid: number; keyType: KeyType } | { ok: false; problem: TableProblem }> {
  const r = await sql<TableRow>`
    SELECT c.oid, c.relkind::text AS relkind, pt.partstrat::text AS strategy,
           (SELECT array_agg(a.attname::text ORDER BY k.ord)
              FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key_columns,
           (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attname = ${timeColumn} AND NOT a.attisdropped) AS key_type
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
     WHERE n.nspname = ${table.schema} AND c.relname = ${table.name}`.execute(db);
  const row = r.rows[0];
  const name = displayRelation(table);
  if (!row)
    return {
      ok: false,
      problem: {
        field: "table",
        message: `${name} does not exist (check the name, or run the migration that creates it)`,
      },
    };
  if (row.relkind !== "p") {
    return {
      ok: false,
      problem: {
        field: "table",
        message: `${name} is not a partitioned table; partition-manager manages RANGE-partitioned tables (see \`telemetry-jobs migrate convert\`)`,
      },
    };
  }
  if (row.strategy !== "r")
    return { ok: false, problem: { field: "table", message: `${name} is not partitioned BY RANGE` } };
  if (row.key_type === null) {
    return {
      ok: false,
      problem: { field: "timeColumn", message: `column "${timeColumn}" does not exist in ${name}` },
    };
  }
  if (row.key_type !== "timestamp with time zone" && row.key_type !== "timestamp without time zone") {
    return {
      ok: false,
      problem: {
        field: "timeColumn",
        message: `column "${timeColumn}" of ${name} is ${row.key_type}, not timestamptz or timestamp`,
      },
    };
  }
  if (row.key_columns?.length !== 1 || row.key_columns[0] !== timeColumn) {
    return {
      ok: false,
      problem: {
        field: "timeColumn",
        message: `${name} is partitioned on (${(row.key_columns ?? []).join(", ")}), not on "${timeColumn}"`,
      },
    };
  }
  return {
    ok: true,
    oid: row.oid,
    keyType: row.key_type === "timestamp with time zone" ? "timestamptz" : "timestamp",
  };
}
