// The actions that add insert tracking to a table (planned by ingest-plan.ts, carried out by
// ingest-execute.ts), and each one as the statement an operator would type.
import { displayRelation, quoteIdent, type Relation } from "../db/relation.ts";
import { INGEST_COLUMN, INGEST_DEFAULT } from "./ingest-plan.ts";

export type IngestAction =
  | { kind: "add_column"; table: Relation }
  | {
      kind: "set_default";
      /** The table, or one partition whose own default is missing. */
      table: Relation;
      /** For a partition: the table it belongs to, which has the default already. */
      partitionOf?: Relation;
      /** For a partition: its bound, so that a warning can say which hours to rebuild. */
      bound?: string | null;
    }
  | { kind: "create_parent_index"; table: Relation; index: string; timeColumn: string }
  | {
      kind: "drop_invalid_index";
      /** The table (or partition) the index belongs to. */
      on: Relation;
      index: Relation;
    }
  | {
      kind: "build_index_concurrently";
      /** The plain table, or one partition of a partitioned table. */
      on: Relation;
      index: string;
      timeColumn: string;
      /** For a partition: its place among the partitions still to be indexed ("3 of 12"). */
      step?: { n: number; of: number };
    }
  | {
      kind: "attach_index";
      parentIndex: Relation;
      childIndex: Relation;
      partition: Relation;
      /** Already attached: re-attaching only makes PostgreSQL mark the parent index valid. */
      revalidate?: boolean;
    };

/** The statement an operator would type for this action (dry runs and logs). */
export function describeIngestAction(a: IngestAction): string {
  switch (a.kind) {
    case "add_column":
      return (
        `ALTER TABLE ${displayRelation(a.table)} ADD COLUMN ${INGEST_COLUMN} xid8; ` +
        `ALTER TABLE ${displayRelation(a.table)} ALTER COLUMN ${INGEST_COLUMN} SET DEFAULT ${INGEST_DEFAULT}`
      );
    case "set_default":
      return `ALTER TABLE ${displayRelation(a.table)} ALTER COLUMN ${INGEST_COLUMN} SET DEFAULT ${INGEST_DEFAULT}`;
    case "create_parent_index":
      return `CREATE INDEX IF NOT EXISTS ${quoteIdent(a.index)} ON ONLY ${displayRelation(a.table)} (${INGEST_COLUMN}, ${quoteIdent(a.timeColumn)})`;
    case "drop_invalid_index":
      return `DROP INDEX CONCURRENTLY IF EXISTS ${displayRelation(a.index)}`;
    case "build_index_concurrently":
      return `CREATE INDEX CONCURRENTLY ${quoteIdent(a.index)} ON ${displayRelation(a.on)} (${INGEST_COLUMN}, ${quoteIdent(a.timeColumn)})`;
    case "attach_index":
      return `ALTER INDEX ${displayRelation(a.parentIndex)} ATTACH PARTITION ${displayRelation(a.childIndex)}`;
  }
}
