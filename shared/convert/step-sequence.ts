// The statement that makes one sequence continue where another left off (swap and revert hand the
// identity over between the plain table and the partitioned one).
import { quoteIdentifier, quoteLiteral, quoteRelation } from "../db/quote.ts";
import type { Relation } from "../db/relation.ts";

/**
 * pg_get_serial_sequence(table, column) as statement text. The function takes the table as text
 * (there is no form taking an oid), so the relation goes in as a literal of its quoted parts, which
 * PostgreSQL reads back as exactly that relation.
 */
function serialSequenceText(table: Relation, column: string): string {
  return `pg_get_serial_sequence(${quoteLiteral(quoteRelation(table))}, ${quoteLiteral(column)})`;
}

/**
 * next value of `target`'s identity := past `source`'s identity sequence and, when an index makes
 * it cheap (this runs under ACCESS EXCLUSIVE), past every id in `scanned` (ids inserted with
 * explicit values).
 */
export function continueSequence(
  target: Relation,
  source: Relation,
  scanned: Relation,
  identity: { column: string; indexed: boolean },
): string {
  const largest = identity.indexed
    ? `(SELECT coalesce(max(${quoteIdentifier(identity.column)}), 0) FROM ${quoteRelation(scanned)})`
    : "0";
  return `SELECT setval(${serialSequenceText(target, identity.column)}, greatest(v, 1), v >= 1) FROM (SELECT greatest(coalesce(pg_sequence_last_value(${serialSequenceText(source, identity.column)}::regclass), 0), ${largest}) AS v) AS last`;
}
