// Quoting for SQL built as text. Some statements must exist as text before they run: a planner
// prints them for --dry-run and keeps them in its step records, so they cannot be Kysely builders
// compiled at execution time. Each identifier is quoted on its own, and a relation is rendered
// from its two parts, never from a joined "schema.name" string. Pure: no I/O.
import type { Relation } from "./relation.ts";

/**
 * One identifier, always double-quoted (embedded quotes doubled), whatever it looks like: catalog
 * names can be keywords or mixed case. For how names are shown to people, see displayRelation.
 */
export function quoteIdentifier(part: string): string {
  return `"${part.replaceAll('"', '""')}"`;
}

/** A string literal (embedded single quotes doubled; standard_conforming_strings is on). */
export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** The relation as `"schema"."name"`, each part quoted on its own. */
export function quoteRelation(r: Relation): string {
  return `${quoteIdentifier(r.schema)}.${quoteIdentifier(r.name)}`;
}

/** A column list, `"a", "b"`. */
export function quoteIdentifiers(parts: readonly string[]): string {
  return parts.map(quoteIdentifier).join(", ");
}
