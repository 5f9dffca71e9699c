// Whether a failed DETACH ... CONCURRENTLY left its partition pending detach (which only FINALIZE
// completes) is read from the catalog, never from the error's text: PostgreSQL words the error in the
// server's language (lc_messages), names the pending partition without its schema, and raises it for
// whichever partition of the table is pending.
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { leftPendingDetach } from "../../shared/retention/remove.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

let t: TestDatabase;
let pendingError: unknown;

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`
    CREATE TABLE public.readings (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.readings_a PARTITION OF public.readings FOR VALUES FROM ('2026-01-01Z') TO ('2026-02-01Z');
    CREATE TABLE public.readings_b PARTITION OF public.readings FOR VALUES FROM ('2026-02-01Z') TO ('2026-03-01Z');
    CREATE SCHEMA other;
    CREATE TABLE other.readings_a (ts timestamptz);`);
  // readings_a pending detach: the DETACH's second step waits for a snapshot older than its first
  // and gives up at lock_timeout.
  const reader = new pg.Client({ connectionString: t.url });
  const detacher = new pg.Client({ connectionString: t.url });
  await reader.connect();
  await detacher.connect();
  try {
    await reader.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    await reader.query("SELECT count(*) FROM public.readings");
    await detacher.query("SET lock_timeout = '200ms'");
    await expect(
      detacher.query("ALTER TABLE public.readings DETACH PARTITION public.readings_a CONCURRENTLY"),
    ).rejects.toThrow(/lock timeout/i);
    await reader.query("COMMIT");
    pendingError = await detacher
      .query("ALTER TABLE public.readings DETACH PARTITION public.readings_a CONCURRENTLY")
      .catch((error: unknown) => error);
  } finally {
    await reader.end();
    await detacher.end();
  }
});
afterAll(async () => {
  await t.drop();
});

const relation = (schema: string, name: string) => ({ schema, name });

it("the error of a second DETACH of a pending partition is recognised", async () => {
  expect((pendingError as { code?: string }).code).toBe("55000");
  expect(await leftPendingDetach(t.db, pendingError, relation("public", "readings_a"))).toBe(true);
});

it("whatever language the server words it in", async () => {
  // The same error worded in German, as a server with lc_messages set to German words it (in its
  // own words; the embedded test servers carry no translations to raise it). SQLSTATE is the same
  // in every language.
  const german = Object.assign(
    new Error(
      "Partition »readings_a« hat bereits eine ausstehende Abtrennung in partitionierter Tabelle »public.readings«",
    ),
    { code: "55000" },
  );
  expect(await leftPendingDetach(t.db, german, relation("public", "readings_a"))).toBe(true);
});

it("not for a partition that is not pending, nor a table of the same name in another schema", async () => {
  expect(await leftPendingDetach(t.db, pendingError, relation("public", "readings_b"))).toBe(false);
  expect(await leftPendingDetach(t.db, pendingError, relation("other", "readings_a"))).toBe(false);
});

it("not for another error", async () => {
  const timeout = Object.assign(new Error("canceling statement due to lock timeout"), { code: "55P03" });
  expect(await leftPendingDetach(t.db, timeout, relation("public", "readings_a"))).toBe(false);
});
