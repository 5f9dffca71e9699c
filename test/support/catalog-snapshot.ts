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
