// Retention against real PostgreSQL: ctid safety, modes, guards, holds, and a property test.
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

let seq = 0;
/** A fresh partitioned table r_N(id, ts) with monthly children for the given months (YYYY-MM). */
async function partitionedTable(months: string[], withDefault = false): Promise<string> {
  const name = `r_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
  for (const m of months) {
    const from = new Date(`${m}-01T00:00:00Z`);
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    await t.pool.query(
      `CREATE TABLE public.${name}_p${m.replace("-", "")} PARTITION OF public.${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
    );
  }
  if (withDefault)
    await t.pool.query(`CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT`);
  return name;
}

function policy(table: string, retention: Record<string, unknown>) {
  return { table: `public.${table}`, timeColumn: "ts", retention: { keep: "1 month", ...retention } };
}

async function rows(table: string): Promise<{ id: number; ts: string }[]> {
  const r = await t.pool.query(`SELECT id, ts FROM public.${table} ORDER BY ts, id`);
  return r.rows.map((row) => ({ id: row.id, ts: new Date(row.ts).toISOString() }));
}

async function ctids(relation: string): Promise<string[]> {
  return (await t.pool.query(`SELECT ctid::text AS c FROM ONLY public.${relation} ORDER BY ctid`)).rows.map(
    (r) => r.c,
  );
}

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01

describe("retention never deletes by a parent's ctid", () => {
  const modes = ["drop", "detach", "archive"] as const;
  for (const mode of modes) {
    for (const exactCutoff of [false, true]) {
      it(`two children with equal ctids, cutoff between them: only the 10 old rows go (mode ${mode}, exactCutoff ${exactCutoff})`, async () => {
        const table = await partitionedTable(["2026-01", "2026-02"]);
        await t.pool.query(
          `INSERT INTO public.${table} SELECT g, '2026-01-10'::timestamptz + g * interval '1 hour' FROM generate_series(1, 10) g`,
        );
        await t.pool.query(
          `INSERT INTO public.${table} SELECT g, '2026-02-10'::timestamptz + g * interval '1 hour' FROM generate_series(1, 10) g`,
        );
        expect(await ctids(`${table}_p202601`)).toEqual(await ctids(`${table}_p202602`));
        const newRows = (await rows(table)).filter((r) => r.ts >= "2026-02-01");
        const run = await runRetention(
          t.db,
          makeConfig(t.url, [policy(table, { mode, exactCutoff })], { now: NOW }),
        );
        expect(run.exitCode).toBe(0);
        expect(await rows(table)).toEqual(newRows);
        expect(newRows).toHaveLength(10);
        expect((await partitionsOf(t.url, `public.${table}`)).map((p) => p.name)).toEqual([
          `${table}_p202602`,
        ]);
      });
    }
  }

  it("DEFAULT rows and a straddling child with equal ctids: only rows before the cutoff go", async () => {
    // One child spans the cutoff (Jan 15 - Feb 15); old and new rows also sit in DEFAULT.
    const table = `r_${++seq}`;
    await t.pool.query(
      `CREATE TABLE public.${table} (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)`,
    );
    await t.pool.query(
      `CREATE TABLE public.${table}_mid PARTITION OF public.${table} FOR VALUES FROM ('2026-01-15') TO ('2026-02-15')`,
    );
    await t.pool.query(`CREATE TABLE public.${table}_default PARTITION OF public.${table} DEFAULT`);
    // Same insertion order in both relations, so ctids match pairwise.
    await t.pool.query(
      `INSERT INTO public.${table} SELECT g, CASE WHEN g <= 5 THEN '2026-01-20'::timestamptz ELSE '2026-02-10'::timestamptz END FROM generate_series(1, 10) g`,
    );
    await t.pool.query(
      `INSERT INTO public.${table} SELECT g, CASE WHEN g <= 5 THEN '2025-06-01'::timestamptz ELSE '2026-06-01'::timestamptz END FROM generate_series(1, 10) g`,
    );
    expect(await ctids(`${table}_mid`)).toEqual(await ctids(`${table}_default`));
    const run = await runRetention(
      t.db,
      makeConfig(t.url, [policy(table, { exactCutoff: true })], { now: NOW }),
    );
    expect(run.exitCode).toBe(0);
    expect(run.summary.actions).toEqual({ delete_rows: 2 });
    const left = await rows(table);
    expect(left).toHaveLength(10);
    expect(left.every((r) => r.ts >= "2026-02-01")).toBe(true);
  });
});

describe("retention modes", () => {
  async function expiredSetup() {
    const table = await partitionedTable(["2025-12", "2026-01", "2026-02"]);
    await t.pool.query(
      `INSERT INTO public.${table} SELECT g, '2025-12-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 2000) g`,
    );
    return table;
  }

  it("drop: the expired children are gone and their space is freed", async () => {
    const table = await expiredSetup();
    const bytesBefore = (await t.pool.query(`SELECT pg_total_relation_size('public.${table}_p202512') AS b`))
      .rows[0].b;
    const run = await runRetention(t.db, makeConfig(t.url, [policy(table, { mode: "drop" })], { now: NOW }));
    expect(run.exitCode).toBe(0);
    expect(run.summary.actions).toEqual({ remove_partition: 2 });
    expect(
      (run.summary.health[`public.${table}`] as { bytesFreed: number }).bytesFreed,
    ).toBeGreaterThanOrEqual(Number(bytesBefore));
    expect((await t.pool.query(`SELECT to_regclass('public.${table}_p202512') AS r`)).rows[0].r).toBeNull();
    const audit = await t.pool.query(
      `SELECT partition_name, rows, detail->>'path' AS path FROM telemetry_jobs.job_actions WHERE table_name = 'public.${table}' ORDER BY range_to`,
    );
    expect(audit.rows.map((r) => r.partition_name)).toEqual([
      `public.${table}_p202512`,
      `public.${table}_p202601`,
    ]);
    expect(audit.rows[0].path).toMatch(
      /^drop \(ACCESS EXCLUSIVE on the parent, under lock_timeout: free within \d+ ms, else CONCURRENTLY; 2 in one transaction, with their audit rows\)$/,
    );
  });

  it("detach: the expired children stay, detached, readable in place", async () => {
    const table = await expiredSetup();
    const run = await runRetention(
      t.db,
      makeConfig(t.url, [policy(table, { mode: "detach" })], { now: NOW }),
    );
    expect(run.exitCode).toBe(0);
    expect((await partitionsOf(t.url, `public.${table}`)).map((p) => p.name)).toEqual([`${table}_p202602`]);
    const detached = await t.pool.query(`SELECT count(*)::int AS n FROM public.${table}_p202512`);
    expect(detached.rows[0].n).toBeGreaterThan(0);
    const comment = await t.pool.query(
      `SELECT obj_description('public.${table}_p202512'::regclass, 'pg_class') AS c`,
    );
    expect(comment.rows[0].c).toMatch(/^telemetry-jobs retention: detached from public\.r_\d+ at 2026-03-01/);
    // A second run does not touch them again.
    const again = await runRetention(
      t.db,
      makeConfig(t.url, [policy(table, { mode: "detach" })], { now: NOW }),
    );
    expect(again.summary.actions).toEqual({});
  });

  it("detach, then partition-manager with a late expired row in DEFAULT: the detached child is not re-attached", async () => {
    const table = await partitionedTable(["2025-12", "2026-01", "2026-02"], true);
    await t.pool.query(
      `INSERT INTO public.${table} SELECT g, '2025-12-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 2000) g`,
    );
    const config = makeConfig(t.url, [policy(table, { mode: "detach" })], { now: NOW });
    expect((await runRetention(t.db, config)).exitCode).toBe(0);
    // A device with a stale clock writes into the detached month: the row lands in DEFAULT.
    await t.pool.query(`INSERT INTO public.${table} VALUES (999999, '2025-12-15T00:00:00Z')`);
    const pm = await runPartitionManager(t.db, config);
    expect(pm.exitCode).toBe(0);
    expect((await partitionsOf(t.url, `public.${table}`)).map((p) => p.name)).not.toContain(
      `${table}_p202512`,
    );
    expect(pm.logs.some((l) => /older than the retention cutoff/.test(l.message))).toBe(true);
    // ... and retention then deletes the expired DEFAULT row.
    expect((await runRetention(t.db, config)).exitCode).toBe(0);
    const left = await t.pool.query(`SELECT count(*)::int AS n FROM ONLY public.${table}_default`);
    expect(left.rows[0].n).toBe(0);
  });

  it("a DETACH CONCURRENTLY that times out waiting for an old snapshot is finished with FINALIZE in the same run", async () => {
    const table = await expiredSetup();
    const reader = new pg.Client({ connectionString: t.url });
    await reader.connect();
    try {
      // An open REPEATABLE READ transaction that has read the parent: the detach's second phase
      // must wait for it, longer than lock_timeout.
      await reader.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await reader.query(`SELECT count(*) FROM public.${table}`);
      setTimeout(() => void reader.query("COMMIT").catch(() => {}), 1_500);
      const config = makeConfig(
        t.url,
        [{ ...policy(table, { mode: "drop" }), lockTimeoutMs: 200, retryBudgetMs: 20_000 }],
        { now: NOW },
      );
      const run = await runRetention(t.db, config);
      expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
      expect(run.logs.some((l) => /finishing it with FINALIZE/.test(l.message))).toBe(true);
      expect((await partitionsOf(t.url, `public.${table}`)).map((p) => p.name)).toEqual([`${table}_p202602`]);
      expect((await t.pool.query(`SELECT to_regclass('public.${table}_p202512') AS r`)).rows[0].r).toBeNull();
    } finally {
      await reader.end();
    }
  });

  it("archive: the expired children move to the archive schema, readable there", async () => {
    const table = await expiredSetup();
    const run = await runRetention(
      t.db,
      makeConfig(t.url, [policy(table, { mode: "archive", archiveSchema: "cold" })], { now: NOW }),
    );
    expect(run.exitCode).toBe(0);
    const archived = await t.pool.query(`SELECT count(*)::int AS n FROM cold.${table}_p202512`);
    expect(archived.rows[0].n).toBe(744 - 1); // December rows from hour 1 to hour 743
    expect((await t.pool.query(`SELECT to_regclass('public.${table}_p202512') AS r`)).rows[0].r).toBeNull();
  });

  it("with a DEFAULT partition, detaches without CONCURRENTLY (PostgreSQL forbids it) and says so", async () => {
    const table = await partitionedTable(["2026-01", "2026-02"], true);
    await t.pool.query(`INSERT INTO public.${table} VALUES (1, '2026-01-05'), (2, '2026-02-05')`);
    const run = await runRetention(t.db, makeConfig(t.url, [policy(table, {})], { now: NOW }));
    expect(run.exitCode).toBe(0);
    const done = run.logs.find((l) => l.message.startsWith("done: drop"));
    expect(done?.path).toMatch(
      /^drop \(ACCESS EXCLUSIVE on the parent, under lock_timeout: the table has a DEFAULT partition;/,
    );
  });
});

describe("retention guard rails", () => {
  it("more removals than maxDropsPerRun are refused (exit 2, nothing changed) unless --force", async () => {
    const table = await partitionedTable(["2025-09", "2025-10", "2025-11", "2025-12", "2026-02"]);
    await t.pool.query(`INSERT INTO public.${table} VALUES (1, '2025-09-05'), (2, '2026-02-05')`);
    const config = makeConfig(t.url, [policy(table, { maxDropsPerRun: 3 })], { now: NOW });
    const refused = await runRetention(t.db, config);
    expect(refused.exitCode).toBe(2);
    expect(refused.status).toBe("refused");
    const recorded = await t.pool.query(
      "SELECT status FROM telemetry_jobs.job_runs WHERE job = 'retention' ORDER BY id DESC LIMIT 1",
    );
    expect(recorded.rows[0].status).toBe("refused");
    expect(refused.logs.some((l) => /more than maxDropsPerRun \(3\)/.test(l.message))).toBe(true);
    expect(await partitionsOf(t.url, `public.${table}`)).toHaveLength(5);
    const forced = await runRetention(t.db, config, { force: true });
    expect(forced.exitCode).toBe(0);
    expect(await partitionsOf(t.url, `public.${table}`)).toHaveLength(1);
  });

  it("a keep below the 1-day floor is refused unless --force", async () => {
    const table = await partitionedTable(["2026-02"]);
    const config = makeConfig(t.url, [policy(table, { keep: "12 hours" })], { now: NOW });
    const run = await runRetention(t.db, config);
    expect(run.exitCode).toBe(2);
    expect(run.logs.some((l) => /shorter than the 1 day floor/.test(l.message))).toBe(true);
    expect((await runRetention(t.db, config, { force: true })).exitCode).toBe(0);
  });

  it("removing every partition that holds data is refused unless --force", async () => {
    const table = await partitionedTable(["2025-12", "2026-01", "2026-05"]);
    await t.pool.query(`INSERT INTO public.${table} VALUES (1, '2025-12-05'), (2, '2026-01-05')`);
    const run = await runRetention(t.db, makeConfig(t.url, [policy(table, {})], { now: NOW }));
    expect(run.exitCode).toBe(2);
    expect(run.logs.some((l) => /every partition that holds data/.test(l.message))).toBe(true);
    expect(await partitionsOf(t.url, `public.${table}`)).toHaveLength(3);
  });

  it("an expired child that is itself partitioned counts as holding its partitions' rows", async () => {
    // Its rows are in its own partitions; read FROM ONLY, it looked empty, and removing it with
    // every other child that holds data went unguarded.
    const table = await partitionedTable(["2026-05"]);
    await t.pool.query(
      `CREATE TABLE public.${table}_p202512 PARTITION OF public.${table}
         FOR VALUES FROM ('2025-12-01') TO ('2026-01-01') PARTITION BY RANGE (ts);
       CREATE TABLE public.${table}_p202512_leaf PARTITION OF public.${table}_p202512
         FOR VALUES FROM ('2025-12-01') TO ('2026-01-01');
       INSERT INTO public.${table} VALUES (1, '2025-12-05'), (2, '2025-12-06');`,
    );
    const run = await runRetention(t.db, makeConfig(t.url, [policy(table, {})], { now: NOW }));
    expect(run.exitCode).toBe(2);
    expect(
      run.logs.some((l) => /every partition that holds data \(public\.r_\d+_p202512\)/.test(l.message)),
    ).toBe(true);
    expect(await partitionsOf(t.url, `public.${table}`)).toHaveLength(2);
  });

  it("a held partition is kept and logged; an expired hold no longer protects it", async () => {
    const table = await partitionedTable(["2025-11", "2025-12", "2026-02"]);
    await t.pool.query(
      `INSERT INTO public.${table} VALUES (1, '2025-11-05'), (2, '2025-12-05'), (3, '2026-02-05')`,
    );
    await t.pool.query(
      `INSERT INTO telemetry_jobs.retention_holds (partition_name, hold_until, reason) VALUES
         ('public.${table}_p202511', '2026-06-01', 'incident 42'),
         ('public.${table}_p202512', '2026-02-15', 'audit, finished')`,
    );
    const run = await runRetention(t.db, makeConfig(t.url, [policy(table, {})], { now: NOW }));
    expect(run.exitCode).toBe(0);
    expect((await partitionsOf(t.url, `public.${table}`)).map((p) => p.name)).toEqual([
      `${table}_p202511`,
      `${table}_p202602`,
    ]);
    expect(run.logs.some((l) => l.finding === "held" && l.message.includes("incident 42"))).toBe(true);
    expect(run.logs.some((l) => l.finding === "hold_expired" && l.message.includes("audit, finished"))).toBe(
      true,
    );
  });

  it("--dry-run lists partitions and counted rows and changes nothing", async () => {
    const table = await partitionedTable(["2025-12", "2026-02"], true);
    await t.pool.query(
      `INSERT INTO public.${table} VALUES (1, '2025-12-05'), (2, '2026-02-05'), (3, '2025-01-01'), (4, '2025-01-02')`,
    );
    const run = await runRetention(t.db, makeConfig(t.url, [policy(table, {})], { now: NOW, dryRun: true }));
    expect(run.exitCode).toBe(0);
    const would = run.logs.filter((l) => l.message.startsWith("would ")).map((l) => l.message);
    expect(would[0]).toMatch(
      new RegExp(
        `^would drop public\\.${table}_p202512 \\[2025-12-01T00:00:00.000Z, 2026-01-01T00:00:00.000Z\\)`,
      ),
    );
    expect(would[1]).toBe(
      `would delete 2 rows older than 2026-02-01T00:00:00.000Z from public.${table}_default (default partition)`,
    );
    expect(await rows(table)).toHaveLength(4);
  });
});

describe("retention property: random layouts, rows and cutoffs", () => {
  it("rows at or after the cutoff survive; expired whole children go; exactCutoff removes every row before it", async () => {
    const months = ["2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"];
    await fc.assert(
      fc.asyncProperty(
        fc.subarray(months, { minLength: 1 }),
        fc.array(fc.integer({ min: 0, max: 210 * 24 - 1 }), { maxLength: 60 }),
        fc.integer({ min: 0, max: 200 }),
        fc.boolean(),
        fc.boolean(),
        async (layout, hourOffsets, cutoffDay, exactCutoff, withDefault) => {
          const table = await partitionedTable(layout, withDefault);
          const base = Date.UTC(2025, 8, 1);
          const covered = (ms: number) =>
            withDefault ||
            layout.some((m) => {
              const from = Date.parse(`${m}-01T00:00:00Z`);
              const d = new Date(from);
              return ms >= from && ms < Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
            });
          const tsList = hourOffsets.map((h) => base + h * 3_600_000).filter(covered);
          if (tsList.length > 0) {
            await t.pool.query(
              `INSERT INTO public.${table} SELECT i, to_timestamp(x / 1000.0) FROM unnest($1::float8[]) WITH ORDINALITY u(x, i)`,
              [tsList],
            );
          }
          const cutoff = base + cutoffDay * 86_400_000;
          const now = new Date(cutoff + 86_400_000); // keep "1 day"
          const before = await rows(table);
          const run = await runRetention(
            t.db,
            makeConfig(t.url, [policy(table, { keep: "1 day", exactCutoff, maxDropsPerRun: 100 })], { now }),
            { force: true },
          );
          expect(run.exitCode).toBe(0);
          const after = await rows(table);
          const cut = new Date(cutoff).toISOString();
          // Every row at or after the cutoff survives.
          expect(after.filter((r) => r.ts >= cut)).toEqual(before.filter((r) => r.ts >= cut));
          // A row before the cutoff survives only in a child that straddles it (never with exactCutoff),
          // and never in DEFAULT.
          for (const r of after.filter((x) => x.ts < cut)) {
            expect(exactCutoff).toBe(false);
            const month = r.ts.slice(0, 7);
            const end = new Date(Date.UTC(Number(month.slice(0, 4)), Number(month.slice(5, 7)), 1)).getTime();
            expect(layout.includes(month) && end > cutoff).toBe(true);
          }
          // Whole expired children are gone; the others remain.
          const remaining = (await partitionsOf(t.url, `public.${table}`))
            .map((p) => p.name)
            .filter((n) => !n.endsWith("_default"));
          const expected = layout
            .filter((m) => {
              const d = new Date(`${m}-01T00:00:00Z`);
              return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) > cutoff;
            })
            .map((m) => `${table}_p${m.replace("-", "")}`);
          expect(remaining).toEqual(expected);
          await t.pool.query(`DROP TABLE public.${table}`);
        },
      ),
      { numRuns: 25 },
    );
  });
});
