// A role's (or database's) defaults never reach the jobs' sessions where their results depend on
// them: each session pins those (shared/db/connect.ts sessionOptions), so a customer's role with
// SERIALIZABLE transactions, standard_conforming_strings off and short timeouts gets the same
// answers. Its search_path is kept (the application's triggers, which the jobs' writes fire, may
// need it); nothing of the product depends on it (search-path.test.ts). Options given in a
// DATABASE_URL are kept beside the pins, never instead of them; timeouts given there are dropped.
import { Kysely, PostgresDialect, sql } from "kysely";
import { afterAll, beforeAll, expect, it } from "vitest";
import { coldColumns } from "../../shared/cold/schema-map.ts";
import { readPartitionColumns, readPartitionDigest } from "../../shared/cold/source.ts";
import { type OpenPool, openPool } from "../../shared/db/connect.ts";
import type { DB } from "../../shared/db/schema.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

let t: TestDatabase;
let role: string;
let hostile: OpenPool;
// transaction_timeout exists from PostgreSQL 17.
let hasTransactionTimeout = false;

beforeAll(async () => {
  t = await createTestDatabase();
  role = `hostile_${t.name}`;
  await t.pool.query(`
    CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD 'hostile';
    CREATE SCHEMA app;
    ALTER ROLE ${role} IN DATABASE ${t.name} SET default_transaction_isolation = 'serializable';
    ALTER ROLE ${role} IN DATABASE ${t.name} SET standard_conforming_strings = off;
    ALTER ROLE ${role} IN DATABASE ${t.name} SET statement_timeout = '1ms';
    ALTER ROLE ${role} IN DATABASE ${t.name} SET idle_in_transaction_session_timeout = '50ms';
    ALTER ROLE ${role} IN DATABASE ${t.name} SET idle_session_timeout = '100ms';
    ALTER ROLE ${role} IN DATABASE ${t.name} SET search_path = app, pg_catalog;
    CREATE TABLE public.readings (id int NOT NULL, ts timestamptz NOT NULL, note text, v float8);
    INSERT INTO public.readings
      SELECT g, '2026-01-01Z'::timestamptz + g * interval '1 minute', 'n' || g, g / 7.0 FROM generate_series(1, 500) g;`);
  const version = await t.pool.query("SELECT current_setting('server_version_num')::int AS v");
  hasTransactionTimeout = version.rows[0].v >= 170000;
  if (hasTransactionTimeout)
    await t.pool.query(`ALTER ROLE ${role} IN DATABASE ${t.name} SET transaction_timeout = '100ms'`);
  const url = new URL(t.url);
  url.username = role;
  url.password = "hostile";
  // A provider's option in the URL, and one that tries to set what the jobs pin.
  url.search = "?options=-c%20work_mem%3D77MB%20-c%20lock_timeout%3D5ms&statement_timeout=1";
  hostile = await openPool(
    { kind: "url", url: url.toString() },
    { job: "session-defaults-test", poolSize: 2 },
  );
});
afterAll(async () => {
  await hostile?.close();
  // The role is the cluster's, not the database's: dropped while the test's pool is still open.
  await t.pool.query(`DROP ROLE IF EXISTS ${role}`);
  await t.drop();
});

it("the jobs' sessions pin their settings; the URL's other options apply too", async () => {
  const r = await hostile.pool.query(`
    SELECT current_user AS who, current_setting('transaction_isolation') AS isolation,
           current_setting('standard_conforming_strings') AS scs,
           current_setting('statement_timeout') AS st,
           current_setting('idle_in_transaction_session_timeout') AS iit,
           current_setting('idle_session_timeout') AS ist,
           current_setting('search_path') AS path, current_setting('lock_timeout') AS lt,
           current_setting('work_mem') AS wm, current_setting('TimeZone') AS tz,
           current_setting('transaction_timeout', true) AS tt`);
  expect(r.rows[0]).toEqual({
    who: role,
    isolation: "read committed",
    scs: "on",
    st: "0",
    iit: "0",
    ist: "0",
    path: "app, pg_catalog",
    lt: "30s",
    wm: "77MB",
    tz: "UTC",
    tt: hasTransactionTimeout ? "0" : null,
  });
});

it("a transaction sees what others committed after its first statement (guards lock, then read)", async () => {
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: hostile.pool }) });
  const seen = await db.transaction().execute(async (trx) => {
    const count = async () =>
      Number((await sql<{ n: string }>`SELECT count(*) AS n FROM public.readings`.execute(trx)).rows[0]!.n);
    const before = await count();
    await t.pool.query("INSERT INTO public.readings VALUES (9999, '2026-01-02Z', NULL, NULL)");
    // Idle in the transaction past the role's 50 ms (and, from PostgreSQL 17, its transaction
    // timeout of 100 ms): the session must still be there.
    await new Promise((resolve) => setTimeout(resolve, 150));
    return { before, after: await count() };
  });
  expect(seen).toEqual({ before: 500, after: 501 });
  await t.pool.query("DELETE FROM public.readings WHERE id = 9999");
});

it("the cold tier's checksum, and a session idle past the role's timeout", async () => {
  const relation = { schema: "public", name: "readings" };
  const digest = async (client: { query: (...args: never[]) => unknown }) => {
    const c = client as unknown as Parameters<typeof readPartitionDigest>[0];
    return await readPartitionDigest(c, relation, coldColumns(await readPartitionColumns(c, relation)), "ts");
  };
  const client = await hostile.pool.connect();
  try {
    await new Promise((resolve) => setTimeout(resolve, 300));
    const ours = await digest(client);
    const reference = await t.pool.connect();
    try {
      expect(ours).toEqual(await digest(reference));
    } finally {
      reference.release();
    }
    expect(ours.rows).toBe(500n);
  } finally {
    client.release();
  }
});
