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

/**
 * The relation's oid as statement text: looked up by its schema and name, each a literal of its
 * own, so no relation name is parsed from text (the text twin of relationOidSql). NULL when it
 * does not exist.
 */
export function relationOidText(r: Relation): string {
  return `(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${quoteLiteral(r.schema)} AND c.relname = ${quoteLiteral(r.name)})`;
}
