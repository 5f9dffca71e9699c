// A customer's database as its application left it, in schema public, for the adoption tests: the
// tables, the rows, and the queries and inserts the application itself runs, so that a test can
// record their answers before telemetry-jobs touches anything and compare them afterwards.
import type pg from "pg";
import { runCli } from "./jobs.ts";

type Queryable = pg.ClientBase | pg.Pool;

/** The CLI's environment for one database and its policies. */
export function cliEnv(url: string, tables: unknown[]): Record<string, string> {
  return { DATABASE_URL: url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables }) };
}

/** Runs the CLI and fails with its whole output when the exit code is not the expected one. */
export async function cliOk(args: string[], env: Record<string, string>, expectedCode = 0) {
  const run = await runCli(args, env);
  if (run.code !== expectedCode) {
    throw new Error(
      `telemetry-jobs ${args.join(" ")} exited ${run.code}, expected ${expectedCode}:\n` +
        `${run.lines.map((l) => `${l.severity} ${l.message}`).join("\n")}\n${run.stderr}`,
    );
  }
  return run;
}

/** REC-002's monthly children with rows: the months the application made itself. */
export const REC002_MONTHS = ["2024-03", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"];

/**
 * REC-002's schema as its ORM made it: units, devices, and sensor_readings already RANGE-partitioned
 * by recorded_at (timestamptz) with an identity id, a (id, recorded_at) primary key, foreign keys to
 * units and devices, three indexes, a child per month named sensor_readings_yYYYYmMM (the months
 * above, each with `rowsPerMonth` rows), and an empty DEFAULT partition, sensor_readings_default.
 */
export async function createRec002(client: Queryable, rowsPerMonth: number): Promise<void> {
  await client.query(`
    CREATE TABLE public.units (id int PRIMARY KEY, symbol text NOT NULL);
    INSERT INTO public.units SELECT g, 'u' || g FROM generate_series(1, 8) g;
    CREATE TABLE public.devices (id int PRIMARY KEY, serial text NOT NULL UNIQUE);
    INSERT INTO public.devices SELECT g, 'SN-' || g FROM generate_series(1, 50) g;
    CREATE TABLE public.sensor_readings (
      id bigint GENERATED ALWAYS AS IDENTITY,
      unit_id int NOT NULL REFERENCES public.units (id),
      device_id int NOT NULL REFERENCES public.devices (id),
      recorded_at timestamptz NOT NULL,
      value double precision NOT NULL,
      CONSTRAINT sensor_readings_pkey PRIMARY KEY (id, recorded_at)
    ) PARTITION BY RANGE (recorded_at);
    CREATE INDEX sensor_readings_unit_id_recorded_at_idx ON public.sensor_readings (unit_id, recorded_at);
    CREATE INDEX sensor_readings_device_id_recorded_at_idx ON public.sensor_readings (device_id, recorded_at);
    CREATE INDEX sensor_readings_recorded_at_idx ON public.sensor_readings (recorded_at);
    CREATE TABLE public.sensor_readings_default PARTITION OF public.sensor_readings DEFAULT;`);
  for (const month of REC002_MONTHS) {
    const [y, m] = month.split("-");
    await client.query(
      `CREATE TABLE public.sensor_readings_y${y}m${m} PARTITION OF public.sensor_readings
         FOR VALUES FROM ('${month}-01 00:00:00+00') TO (('${month}-01 00:00:00+00'::timestamptz + interval '1 month'))`,
    );
    // Spread over the month: one row every (month length / rows), devices and units in turn.
    await client.query(
      `INSERT INTO public.sensor_readings (unit_id, device_id, recorded_at, value)
       SELECT g % 8 + 1, g % 50 + 1,
              $1::timestamptz + (g - 1) * (($1::timestamptz + interval '1 month') - $1::timestamptz) / $2,
              (g % 997) / 10.0
         FROM generate_series(1, $2) g`,
      [`${month}-01T00:00:00Z`, rowsPerMonth],
    );
  }
  await client.query("ANALYZE public.sensor_readings");
}

/** REC-002's own insert: its column list, no id (the identity makes it). */
export async function rec002Insert(
  client: Queryable,
  row: { unit: number; device: number; at: string; value: number },
): Promise<{ id: string; partition: string }> {
  const r = await client.query(
    `INSERT INTO public.sensor_readings (unit_id, device_id, recorded_at, value) VALUES ($1, $2, $3, $4)
     RETURNING id::text AS id, tableoid::regclass::text AS partition`,
    [row.unit, row.device, row.at, row.value],
  );
  return r.rows[0];
}

/** The answers of REC-002's queries, comparable with toEqual. */
export async function rec002Answers(client: Queryable) {
  // One device's readings for one month, as the dashboard pages them.
  const deviceMonth = await client.query(
    `SELECT id::text, unit_id, recorded_at, value FROM public.sensor_readings
      WHERE device_id = 7 AND recorded_at >= '2026-09-01T00:00:00Z' AND recorded_at < '2026-10-01T00:00:00Z'
      ORDER BY recorded_at, id`,
  );
  // Latest reading per device.
  const latest = await client.query(
    `SELECT DISTINCT ON (device_id) device_id, id::text, recorded_at, value FROM public.sensor_readings
      ORDER BY device_id, recorded_at DESC, id DESC`,
  );
  // Monthly averages per unit since June 2026.
  const perUnit = await client.query(
    `SELECT unit_id, date_trunc('month', recorded_at AT TIME ZONE 'UTC') AS month, count(*)::int AS n,
            round(avg(value)::numeric, 6)::text AS avg
       FROM public.sensor_readings WHERE recorded_at >= '2026-06-01T00:00:00Z'
      GROUP BY 1, 2 ORDER BY 1, 2`,
  );
  return { deviceMonth: deviceMonth.rows, latest: latest.rows, perUnit: perUnit.rows };
}

export interface Child {
  name: string;
  oid: number;
  bound: string;
  rows: number;
}

/** Every child of `parent` with its oid, bound and exact row count, by name. */
export async function childrenOf(client: Queryable, parent: string): Promise<Child[]> {
  const r = await client.query<{ name: string; oid: number; bound: string }>(
    `SELECT c.relname AS name, c.oid::int AS oid, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = $1::regclass ORDER BY 1`,
    [parent],
  );
  const out: Child[] = [];
  for (const row of r.rows) {
    const n = await client.query(`SELECT count(*)::int AS n FROM public.${row.name}`);
    out.push({ ...row, rows: n.rows[0].n });
  }
  return out;
}

/**
 * For each child of `parent`: how many of the parent's indexes have an attached partition index on
 * it, and which foreign keys it inherited (contype 'f' with a parent constraint), as "column ->
 * referenced table".
 */
export async function inheritedKeysOf(
  client: Queryable,
  parent: string,
): Promise<Map<string, { indexes: number; foreignKeys: string[] }>> {
  const idx = await client.query<{ child: string; n: number }>(
    `SELECT c.relname AS child, count(*)::int AS n
       FROM pg_index pix
       JOIN pg_inherits ii ON ii.inhparent = pix.indexrelid
       JOIN pg_index cix ON cix.indexrelid = ii.inhrelid
       JOIN pg_class c ON c.oid = cix.indrelid
      WHERE pix.indrelid = $1::regclass
      GROUP BY 1`,
    [parent],
  );
  const fks = await client.query<{ child: string; fk: string }>(
    `SELECT c.relname AS child,
            format('%s -> %s', (SELECT string_agg(a.attname, ',') FROM pg_attribute a
                                 WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)),
                   k.confrelid::regclass) AS fk
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
       JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = $1::regclass
      WHERE k.contype = 'f' AND k.conparentid <> 0
      ORDER BY 1, 2`,
    [parent],
  );
  const out = new Map<string, { indexes: number; foreignKeys: string[] }>();
  for (const c of await childrenOf(client, parent)) out.set(c.name, { indexes: 0, foreignKeys: [] });
  for (const r of idx.rows) out.get(r.child)!.indexes = r.n;
  for (const r of fks.rows) out.get(r.child)!.foreignKeys.push(r.fk);
  return out;
}
