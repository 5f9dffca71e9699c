// The drop path's transactions: expired children are dropped and audited together in one short
// transaction (ACCESS EXCLUSIVE on the parent under lock_timeout, no DETACH); a busy parent
// makes it fall back to DETACH CONCURRENTLY child by child. An event trigger records the
// transaction of every DDL the run issues, so the tests count transactions.
import { Writable } from "node:stream";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log/logger.ts";
import { runRetentionJob } from "../../shared/retention/job.ts";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`
    CREATE TABLE public.ddl_log (id serial, xid xid8, tag text, object text);
    CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO public.ddl_log (xid, tag, object)
        SELECT pg_current_xact_id(), c.command_tag, c.object_identity FROM pg_event_trigger_ddl_commands() c;
    END $$;
    CREATE EVENT TRIGGER retention_test_log_ddl ON ddl_command_end EXECUTE FUNCTION public.log_ddl();
    CREATE FUNCTION public.log_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO public.ddl_log (xid, tag, object)
        SELECT pg_current_xact_id(), 'DROP TABLE', o.object_identity FROM pg_event_trigger_dropped_objects() o
         WHERE o.object_type = 'table';
    END $$;
    CREATE EVENT TRIGGER retention_test_log_drop ON sql_drop EXECUTE FUNCTION public.log_drop();`);
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
let seq = 0;

/** d_N(id, ts): monthly children 2025-11 .. 2026-03 (three expire), 100 rows over them; DEFAULT if asked. */
async function table(withDefault: boolean): Promise<string> {
  const name = `d_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
  for (const m of ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]) {
    const from = new Date(`${m}-01T00:00:00Z`);
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    await t.pool.query(
      `CREATE TABLE public.${name}_p${m.replace("-", "")} PARTITION OF public.${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
    );
  }
  if (withDefault)
    await t.pool.query(`CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT`);
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours' FROM generate_series(0, 99) g`,
  );
  await t.pool.query("TRUNCATE public.ddl_log");
  return name;
}

const expired = (name: string) => [`${name}_p202511`, `${name}_p202512`, `${name}_p202601`];

function config(name: string, retention: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return makeConfig(
    t.url,
    [{ table: `public.${name}`, timeColumn: "ts", ...extra, retention: { keep: "1 month", ...retention } }],
    { now: NOW },
  );
}

/** The transactions (in order of first use) of the detaches and of the drops of the run. */
async function transactions() {
  const r = await t.pool.query(
    `SELECT tag, array_agg(DISTINCT xid::text) AS xids FROM public.ddl_log
      WHERE tag IN ('ALTER TABLE', 'DROP TABLE') GROUP BY tag`,
  );
  const of = (tag: string) => (r.rows.find((row) => row.tag === tag)?.xids ?? []) as string[];
  return { detach: of("ALTER TABLE"), drop: of("DROP TABLE") };
}

async function audit(name: string) {
  const r = await t.pool.query(
    `SELECT partition_name, outcome, detail->>'path' AS path, xmin::text AS xmin FROM telemetry_jobs.job_actions
      WHERE table_name = $1 ORDER BY range_to`,
    [`public.${name}`],
  );
  return r.rows as { partition_name: string; outcome: string; path: string; xmin: string }[];
}

async function exists(name: string): Promise<boolean> {
  return (await t.pool.query("SELECT to_regclass($1) IS NOT NULL AS e", [`public.${name}`])).rows[0].e;
}

describe("retention drop path: one transaction drops and audits", () => {
  for (const withDefault of [false, true]) {
    it(`${withDefault ? "with" : "without"} a DEFAULT partition: three expired children, one transaction, three audit rows in it`, async () => {
      const name = await table(withDefault);
      const run = await runRetention(t.db, config(name));
      expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
      expect(run.summary.actions).toEqual({ remove_partition: 3 });
      for (const child of expired(name)) expect(await exists(child)).toBe(false);
      const tx = await transactions();
      expect(tx.detach).toEqual([]);
      expect(tx.drop).toHaveLength(1);
      const rows = await audit(name);
      expect(rows.map((r) => r.partition_name)).toEqual(expired(name).map((c) => `public.${c}`));
      // xid8 carries an epoch above the 32 bits of xmin.
      const xid = String(BigInt(tx.drop[0]!) % 2n ** 32n);
      for (const r of rows) {
        expect(r.outcome).toBe("ok");
        expect(r.xmin).toBe(xid);
        expect(r.path).toMatch(
          /^drop \(ACCESS EXCLUSIVE on the parent, under lock_timeout.*3 in one transaction, with their audit rows\)$/,
        );
      }
    });
  }

  it("children with a foreign key: detached in one transaction, dropped in a second (the drop locks the table referred to)", async () => {
    const name = await table(true);
    await t.pool.query(`
      CREATE TABLE public.${name}_ids (id int PRIMARY KEY);
      INSERT INTO public.${name}_ids SELECT g FROM generate_series(0, 99) g;
      ALTER TABLE public.${name} ADD FOREIGN KEY (id) REFERENCES public.${name}_ids (id);`);
    await t.pool.query("TRUNCATE public.ddl_log");
    const run = await runRetention(t.db, config(name));
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(run.summary.actions).toEqual({ remove_partition: 3 });
    for (const child of expired(name)) expect(await exists(child)).toBe(false);
    const tx = await transactions();
    expect(tx.detach).toHaveLength(1);
    expect(tx.drop).toHaveLength(1);
    expect(tx.drop[0]).not.toBe(tx.detach[0]);
    for (const r of await audit(name))
      expect(r.path).toMatch(
        /^detach \(ACCESS EXCLUSIVE on the parent, under lock_timeout.*3 in one transaction\), drop$/,
      );
  });

  it("a long query holds the parent: no queueing for ACCESS EXCLUSIVE; each child is detached CONCURRENTLY", async () => {
    const name = await table(false);
    const reader = new pg.Client({ connectionString: t.url });
    const writer = new pg.Client({ connectionString: t.url });
    await Promise.all([reader.connect(), writer.connect()]);
    let errors = 0;
    let inserted = 0;
    let stop = false;
    try {
      await reader.query("BEGIN");
      await reader.query(`SELECT count(*) FROM public.${name}`);
      setTimeout(() => void reader.query("COMMIT").catch(() => {}), 1_000);
      const writing = (async () => {
        for (let i = 1000; !stop; i++) {
          await writer.query(`INSERT INTO public.${name} VALUES ($1, '2026-02-10T00:00:00Z')`, [i]).then(
            () => inserted++,
            () => errors++,
          );
        }
      })();
      const run = await runRetention(t.db, config(name, {}, { lockTimeoutMs: 200, retryBudgetMs: 20_000 }));
      stop = true;
      await writing;
      expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
      for (const r of await audit(name)) expect(r.path).toMatch(/^detach concurrently .*, drop$/);
      expect((await partitionsOf(t.url, `public.${name}`)).map((p) => p.name)).toEqual([
        `${name}_p202602`,
        `${name}_p202603`,
      ]);
      expect(errors).toBe(0);
      expect(inserted).toBeGreaterThan(0);
    } finally {
      stop = true;
      await Promise.all([reader.end(), writer.end()]);
    }
  });

  it("the drop fails (a view on one child): nothing is removed or marked, and the next run removes them", async () => {
    const name = await table(false);
    const before = (await partitionsOf(t.url, `public.${name}`)).map((p) => p.name);
    await t.pool.query(`CREATE VIEW public.${name}_v AS SELECT * FROM public.${name}_p202511`);
    const failed = await runRetention(t.db, config(name));
    expect(failed.exitCode).not.toBe(0);
    const error = failed.logs.find((l) => l.severity === "ERROR");
    expect(String(error?.error ?? error?.message)).toMatch(/depend/);
    expect((await partitionsOf(t.url, `public.${name}`)).map((p) => p.name)).toEqual(before);
    const comments = await t.pool.query(
      `SELECT obj_description(to_regclass('public.' || c), 'pg_class') AS c FROM unnest($1::text[]) c`,
      [expired(name)],
    );
    expect(comments.rows.map((r) => r.c)).toEqual([null, null, null]);

    await t.pool.query(`DROP VIEW public.${name}_v`);
    const next = await runRetention(t.db, config(name));
    expect(next.exitCode).toBe(0);
    expect(next.summary.actions).toEqual({ remove_partition: 3 });
    for (const child of expired(name)) expect(await exists(child)).toBe(false);
  });

  it("a stop request as the batch completes: every child it removed still gets its audit row", async () => {
    const name = await table(false);
    const controller = new AbortController();
    const out = new Writable({
      write(chunk, _enc, done) {
        if (/"message":"done: /.test(chunk.toString())) controller.abort();
        done();
      },
    });
    const log = createLogger({ job: "retention", format: "json", out, verbose: true });
    await runRetentionJob(t.db, config(name), log, controller.signal, { force: false });
    expect(controller.signal.aborted).toBe(true);
    for (const child of expired(name)) expect(await exists(child)).toBe(false);
    expect((await audit(name)).map((r) => [r.partition_name, r.outcome])).toEqual(
      expired(name).map((c) => [`public.${c}`, "ok"]),
    );
  });
});
