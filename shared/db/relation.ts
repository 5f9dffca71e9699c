// Relations are carried as their two parts, schema and name, exactly as pg_catalog spells them, and
// turned into SQL only at the last moment, each part quoted on its own. A name PostgreSQL allows can
// hold dots, quotes, spaces and upper case: joining "public" and "victim.old" with a dot and splitting
// the result again (or letting a helper such as Kysely's sql.table / sql.ref split it) names a
// different relation, public.victim, and a DROP meant for one table lands on another.
import { type RawBuilder, sql } from "kysely";
import type { QualifiedName } from "../config/identifiers.ts";

/** A relation by its parts; `oid` when a catalog read found it, so later SQL can use it directly. */
export interface Relation extends QualifiedName {
  readonly oid?: number | undefined;
}

/** NAMEDATALEN - 1: PostgreSQL silently truncates longer identifiers. */
export const MAX_IDENTIFIER_BYTES = 63;

/** The relation as one SQL identifier, `"schema"."name"`, each part quoted and escaped. */
export function relationSql(r: Relation): RawBuilder<unknown> {
  return sql.id(r.schema, r.name);
}

/** One column (or other single identifier) as SQL, quoted; never split on dots. */
export function columnSql(name: string): RawBuilder<unknown> {
  return sql.id(name);
}

/**
 * The relation's oid as SQL: the oid a catalog read found, or else a subquery on pg_class by the two
 * parts (NULL when it does not exist), never a text cast to regclass.
 */
export function relationOidSql(r: Relation): RawBuilder<unknown> {
  if (r.oid !== undefined) return sql`${r.oid}::oid`;
  return sql`(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = ${r.schema} AND c.relname = ${r.name})`;
}

const PLAIN_IDENTIFIER = /^[a-z_][a-z0-9_$]*$/;

/** quote_ident's rule: double-quoted (quotes doubled) unless it is a plain lower-case identifier. */
export function quoteIdent(part: string): string {
  return PLAIN_IDENTIFIER.test(part) ? part : `"${part.replaceAll('"', '""')}"`;
}

/**
 * How a relation is shown in logs, audit rows and hold names: `schema.name`, each part quoted the way
 * quote_ident would (`public."victim.old"`). Distinct relations always render differently, so the
 * text also serves as a map key; it is never split back into parts.
 */
export function displayRelation(r: Relation): string {
  return `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;
}

export function sameRelation(a: Relation, b: Relation): boolean {
  return a.schema === b.schema && a.name === b.name;
}

/**
 * Reads a relation name as an operator types it, the way PostgreSQL reads SQL: `schema.name`, each
 * part either plain (folded to lower case) or double-quoted (kept exactly, "" for a quote), e.g.
 * `public."victim.old"` or `Public.Readings` (= public.readings). The schema is required. Returns
 * undefined for anything else. This reads user input once; names the tool renders itself are never
 * parsed back.
 */
export function parseRelationText(text: string): Relation | undefined {
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let part = "";
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) return undefined;
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i++];
      }
      if (part === "") return undefined;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(text.slice(i));
      if (!m) return undefined;
      part = m[0].toLowerCase();
      i += m[0].length;
    }
    if (Buffer.byteLength(part) > MAX_IDENTIFIER_BYTES) return undefined;
    parts.push(part);
    if (i === text.length) break;
    if (text[i] !== ".") return undefined;
    i++;
  }
  return parts.length === 2 ? { schema: parts[0]!, name: parts[1]! } : undefined;
}
