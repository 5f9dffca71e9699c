// The statement that makes one sequence continue where another left off (swap and revert hand the
// identity over between the plain table and the partitioned one).
import { quoteIdentifier, quoteLiteral, quoteRelation, relationOidText } from "../db/quote.ts";
import type { Relation } from "../db/relation.ts";
import type { Statement } from "./step.ts";

/**
 * The oid of the sequence behind `table`'s identity column `column`, found as
 * pg_get_serial_sequence finds it (the sequence depends internally on the column) but from the
 * table's oid, so that no relation name is parsed from text. A pg_class row's tableoid is the oid
 * of pg_class itself, which pg_depend's classid and refclassid name. NULL when there is none.
 */
function identitySequenceText(table: Relation, column: string): string {
  return `(SELECT s.oid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid AND d.classid = s.tableoid AND s.relkind = 'S' JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.refclassid = s.tableoid AND d.deptype = 'i' AND d.refobjid = ${relationOidText(table)} AND a.attname = ${quoteLiteral(column)})`;
}

/**
 * next value of `target`'s identity := past `source`'s identity sequence and, when an index makes
 * it cheap (this runs under ACCESS EXCLUSIVE), past every id in `scanned` (ids inserted with
 * explicit values). Both sequences must be found, or the step fails and its transaction changes
 * nothing: the statement returns one row only then (setval on a NULL oid would do nothing and let
 * the step go on with an identity nobody continued).
 */
export function continueSequence(
  target: Relation,
  source: Relation,
  scanned: Relation,
  identity: { column: string; indexed: boolean },
): Statement {
  const largest = identity.indexed
    ? `(SELECT coalesce(max(${quoteIdentifier(identity.column)}), 0) FROM ${quoteRelation(scanned)})`
    : "0";
  return {
    sql: `SELECT setval(seq.target, greatest(last.v, 1), last.v >= 1) FROM (SELECT ${identitySequenceText(target, identity.column)} AS target, ${identitySequenceText(source, identity.column)} AS source) AS seq CROSS JOIN LATERAL (SELECT greatest(coalesce(pg_sequence_last_value(seq.source), 0), ${largest}) AS v) AS last WHERE seq.target IS NOT NULL AND seq.source IS NOT NULL`,
    expectRows: 1,
    guard: `no identity sequence of column ${quoteIdentifier(identity.column)} on ${quoteRelation(target)} or ${quoteRelation(source)} (is the table there, does the column still have its identity?)`,
  };
}
