// Identifiers from configuration end up in DDL. Kysely's sql.id/sql.table quote them, but its docs
// warn that unchecked input there is still injection-prone, so we accept only plain lower-case
// PostgreSQL identifiers (no quoting needed, at most 63 bytes, the NAMEDATALEN limit).
export const IDENTIFIER_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

export interface QualifiedName {
  readonly schema: string;
  readonly name: string;
}

export function isIdentifier(value: string): boolean {
  return IDENTIFIER_PATTERN.test(value);
}

/** "schema.table" or "table" (schema public) -> parts; undefined when not two plain identifiers. */
export function parseQualifiedName(value: string): QualifiedName | undefined {
  const parts = value.split(".");
  if (parts.length === 1 && isIdentifier(parts[0]!)) return { schema: "public", name: parts[0]! };
  if (parts.length === 2 && isIdentifier(parts[0]!) && isIdentifier(parts[1]!)) {
    return { schema: parts[0]!, name: parts[1]! };
  }
  return undefined;
}
