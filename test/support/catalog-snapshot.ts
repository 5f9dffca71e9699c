// A comparable picture of a database's schema objects, to prove that a refused run changed nothing.
import pg from "pg";

export async function catalogSnapshot(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query<{ item: string }>(`
      SELECT format('%s.%s %s partition=%s bound=%s', n.nspname, c.relname, c.relkind, c.relispartition,
                    coalesce(pg_get_expr(c.relpartbound, c.oid), '-')) AS item
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      UNION ALL
      SELECT format('constraint %s on %s: %s', k.conname, k.conrelid::regclass, pg_get_constraintdef(k.oid))
        FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      ORDER BY 1`);
    return r.rows.map((row) => row.item);
  } finally {
    await client.end();
  }
}

export async function partitionsOf(url: string, parent: string): Promise<{ name: string; bound: string }[]> {
  const client = new pg.Client({ connectionString: url, options: "-c TimeZone=UTC" });
  await client.connect();
  try {
    const r = await client.query<{ name: string; bound: string }>(
      `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = $1::regclass ORDER BY 1`,
      [parent],
    );
    return r.rows;
  } finally {
    await client.end();
  }
}

/**
 * Everything PostgreSQL records about one schema's objects, to prove that something changed none of
 * them: relations (kind, partition bound, storage file: a rewrite changes it, owner, privileges),
 * columns (type, NOT NULL, default), index and constraint definitions, triggers, and the full
 * definition of every function.
 */
export async function schemaCatalog(url: string, schema: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url, options: "-c search_path=pg_catalog" });
  await client.connect();
  try {
    const r = await client.query<{ item: string }>(
      `SELECT format('relation %I kind=%s partition=%s bound=%s file=%s owner=%s acl=%s', c.relname, c.relkind,
                     c.relispartition, coalesce(pg_get_expr(c.relpartbound, c.oid), '-'), c.relfilenode,
                     c.relowner::regrole, coalesce(c.relacl::text, '-')) AS item
         FROM pg_class c WHERE c.relnamespace = $1::regnamespace
       UNION ALL
       SELECT format('column %I.%I %s notnull=%s default=%s', c.relname, a.attname,
                     format_type(a.atttypid, a.atttypmod), a.attnotnull,
                     coalesce(pg_get_expr(d.adbin, d.adrelid), '-'))
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = $1::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL
       SELECT format('index %s', pg_get_indexdef(i.indexrelid))
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = $1::regnamespace
       UNION ALL
       SELECT format('constraint %I on %s: %s', k.conname, k.conrelid::regclass, pg_get_constraintdef(k.oid))
         FROM pg_constraint k WHERE k.connamespace = $1::regnamespace
       UNION ALL
       SELECT format('trigger %s', pg_get_triggerdef(t.oid))
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal
       UNION ALL
       SELECT format('function %s', pg_get_functiondef(p.oid))
         FROM pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.prokind IN ('f', 'p')
       ORDER BY 1`,
      [schema],
    );
    return r.rows.map((row) => row.item);
  } finally {
    await client.end();
  }
}

/**
 * Records every DDL command run in the database from now on (an event trigger, superuser only):
 * `commands()` returns each created, altered or dropped object with its schema, to check that a
 * step touched nothing outside the schemas it may. The recorder lives in its own schema,
 * ddl_audit.
 */
export async function recordDdl(url: string): Promise<{ commands(): Promise<DdlCommand[]> }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`
      CREATE SCHEMA ddl_audit;
      CREATE TABLE ddl_audit.commands (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tag text NOT NULL, object_type text, schema_name text, identity text, query text);
      CREATE FUNCTION ddl_audit.on_end() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        INSERT INTO ddl_audit.commands (tag, object_type, schema_name, identity, query)
        SELECT c.command_tag, c.object_type, c.schema_name, c.object_identity, pg_catalog.current_query()
          FROM pg_catalog.pg_event_trigger_ddl_commands() c;
      END $fn$;
      CREATE FUNCTION ddl_audit.on_drop() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        INSERT INTO ddl_audit.commands (tag, object_type, schema_name, identity, query)
        SELECT 'DROP', d.object_type, d.schema_name, d.object_identity, pg_catalog.current_query()
          FROM pg_catalog.pg_event_trigger_dropped_objects() d;
      END $fn$;
      CREATE EVENT TRIGGER ddl_audit_end ON ddl_command_end EXECUTE FUNCTION ddl_audit.on_end();
      CREATE EVENT TRIGGER ddl_audit_drop ON sql_drop EXECUTE FUNCTION ddl_audit.on_drop();`);
  } finally {
    await client.end();
  }
  return {
    async commands() {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const r = await c.query<DdlCommand>(
          `SELECT tag, object_type AS "objectType", schema_name AS "schema", identity, query
             FROM ddl_audit.commands ORDER BY id`,
        );
        return r.rows;
      } finally {
        await c.end();
      }
    },
  };
}

export interface DdlCommand {
  tag: string;
  objectType: string | null;
  /** The object's schema; for a schema itself, null (its name is the identity). */
  schema: string | null;
  identity: string | null;
  /** The statement that ran it. */
  query: string;
}

/**
 * The commands that created, altered or dropped something outside `schema`. PostgreSQL names no
 * object for GRANT and REVOKE: those count as inside only when every object their statement names
 * is qualified with `schema`.
 */
export function ddlOutside(commands: readonly DdlCommand[], schema: string): DdlCommand[] {
  return commands.filter((c) => {
    if (c.objectType === "schema") return c.identity !== schema;
    if ((c.tag === "GRANT" || c.tag === "REVOKE") && c.identity === null) {
      const on = /\bON\s+(?:ALL\s+\w+\s+IN\s+SCHEMA\s+|\w+\s+)?(.+?)\s+(?:FROM|TO)\b/is.exec(c.query);
      const objects = on?.[1]?.split(/,(?![^(]*\))/).map((o) => o.trim()) ?? [];
      return objects.length === 0 || !objects.every((o) => o.startsWith(`${schema}.`));
    }
    return c.schema !== schema;
  });
}
