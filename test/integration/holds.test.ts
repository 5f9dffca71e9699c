// `hold` protects only what it names: a partition of a table in the policy, until an instant in the
// future. A typo (or a partition of an unmanaged table, or a date in the past) would be stored as a
// hold on nothing while retention drops the partition the operator meant to keep: those are refused
// with exit 2, nothing written, the closest partition named. unhold takes any name.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli, startCli } from "../support/jobs.ts";

let t: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  await t.pool.query(`
    CREATE TABLE public.readings (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
    CREATE TABLE public.readings_p202501 PARTITION OF public.readings FOR VALUES FROM ('2025-01-01Z') TO ('2025-02-01Z');
    CREATE TABLE public."Readings Feb" PARTITION OF public.readings FOR VALUES FROM ('2025-02-01Z') TO ('2025-03-01Z');
    CREATE TABLE public.other (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.other_p202501 PARTITION OF public.other FOR VALUES FROM ('2025-01-01Z') TO ('2025-02-01Z');`);
  env = {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
      tables: [{ table: "public.readings", timeColumn: "ts", retention: { keep: "1 year" } }],
    }),
  };
  expect((await runCli(["migrate", "up"], env)).code).toBe(0);
});
afterAll(async () => {
  await t?.drop();
});

const FUTURE = "2099-01-01T00:00:00Z";
const holdCount = async () =>
  Number((await t.pool.query("SELECT count(*) AS n FROM telemetry_jobs.retention_holds")).rows[0].n);
const text = (run: { lines: { message: string }[]; stderr: string }) =>
  `${run.lines.map((l) => l.message).join("\n")}\n${run.stderr}`;

describe("hold", () => {
  it("a typo: exit 2, nothing written, the closest partition named", async () => {
    const run = await runCli(["hold", "public.readings_p20251", "--until", FUTURE, "--reason", "audit"], env);
    expect(run.code).toBe(2);
    expect(text(run)).toMatch(
      /public\.readings_p20251 is not a partition of any table in the policy, nor one retention took out of it; did you mean public\.readings_p202501\?/,
    );
    expect(await holdCount()).toBe(0);
  });

  it("a partition of a table the policy does not manage: exit 2, nothing written", async () => {
    const run = await runCli(["hold", "public.other_p202501", "--until", FUTURE, "--reason", "audit"], env);
    expect(run.code).toBe(2);
    expect(text(run)).toMatch(/is a partition of public\.other, which is not in the policy/);
    expect(await holdCount()).toBe(0);
  });

  it("an --until in the past: exit 2 before connecting, nothing written", async () => {
    const run = await runCli(
      ["hold", "public.readings_p202501", "--until", "2020-01-01T00:00:00Z", "--reason", "audit"],
      env,
    );
    expect(run.code).toBe(2);
    expect(text(run)).toMatch(/--until 2020-01-01T00:00:00.000Z is not in the future/);
    expect(await holdCount()).toBe(0);
  });

  it("a partition of a managed table, quoted as SQL quotes it: held; unhold takes any name", async () => {
    const held = await runCli(["hold", 'public."Readings Feb"', "--until", FUTURE, "--reason", "audit"], env);
    expect(held.code, text(held)).toBe(0);
    const rows = await t.pool.query("SELECT partition_name FROM telemetry_jobs.retention_holds");
    expect(rows.rows).toEqual([{ partition_name: 'public."Readings Feb"' }]);
    expect((await runCli(["unhold", "public.no_such_thing"], env)).code).toBe(0);
    expect((await runCli(["unhold", 'public."Readings Feb"'], env)).code).toBe(0);
    expect(await holdCount()).toBe(0);
  });

  it("a hold placed while a removal holds the partition waits for it, and says when it is gone", async () => {
    await t.pool.query(
      "CREATE TABLE public.readings_p202410 PARTITION OF public.readings FOR VALUES FROM ('2024-10-01Z') TO ('2024-11-01Z')",
    );
    const remover = await t.pool.connect();
    try {
      // As retention's removal does: the partition locked, then dropped, then committed.
      await remover.query("BEGIN; LOCK TABLE public.readings_p202410 IN ACCESS EXCLUSIVE MODE");
      const hold = startCli(["hold", "public.readings_p202410", "--until", FUTURE, "--reason", "audit"], env);
      let waiting = 0;
      for (let i = 0; i < 1000 && waiting === 0; i++) {
        const r = await t.pool.query(
          `SELECT count(*)::int AS n FROM pg_locks l
            WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.relation = 'public.readings_p202410'::regclass AND l.mode = 'AccessShareLock' AND NOT l.granted`,
        );
        waiting = r.rows[0].n;
        if (waiting === 0) await new Promise((r) => setTimeout(r, 10));
      }
      expect(waiting).toBe(1);
      await remover.query("DROP TABLE public.readings_p202410; COMMIT");
      const { code } = await hold.done;
      expect(code).toBe(1);
      expect(text(hold)).toMatch(
        /public\.readings_p202410 no longer exists under that name: it was dropped .* Nothing was written/,
      );
      expect(await holdCount()).toBe(0);
    } finally {
      remover.release();
    }
  });

  it("a partition a removal has begun on: held, with a WARN saying so and how to put it back", async () => {
    await t.pool.query(`
      CREATE TABLE public.readings_p202409 PARTITION OF public.readings FOR VALUES FROM ('2024-09-01Z') TO ('2024-10-01Z');
      COMMENT ON TABLE public.readings_p202409 IS
        'telemetry-jobs retention: removing from public.readings, mode drop, range [2024-09-01T00:00:00.000Z, 2024-10-01T00:00:00.000Z)'`);
    const hold = await runCli(
      ["hold", "public.readings_p202409", "--until", FUTURE, "--reason", "audit"],
      env,
    );
    expect(hold.code, text(hold)).toBe(0);
    const warned = hold.lines.filter((l) => l.severity === "WARNING").map((l) => l.message);
    expect(warned).toEqual([
      expect.stringMatching(
        /^public\.readings_p202409: retention has begun removing it .* ATTACH PARTITION public\.readings_p202409 FOR VALUES FROM \.\.\. TO \.\.\. \(its range: \[2024-09-01T00:00:00\.000Z, 2024-10-01T00:00:00\.000Z\)\)$/,
      ),
    ]);
    expect((await runCli(["unhold", "public.readings_p202409"], env)).code).toBe(0);
    await t.pool.query("DROP TABLE public.readings_p202409");
  });

  // Last: the retention run below drops the partitions the tests above use.
  it("a partition a killed retention run detached but did not drop: held, and the next run keeps it", async () => {
    await t.pool.query(`
      CREATE TABLE public.readings_p202412 PARTITION OF public.readings FOR VALUES FROM ('2024-12-01Z') TO ('2025-01-01Z');
      INSERT INTO public.readings VALUES ('2024-12-05Z', 1);
      ALTER TABLE public.readings DETACH PARTITION public.readings_p202412;
      COMMENT ON TABLE public.readings_p202412 IS 'telemetry-jobs retention: removing from public.readings, mode drop';`);
    const hold = await runCli(
      ["hold", "public.readings_p202412", "--until", FUTURE, "--reason", "legal hold"],
      env,
    );
    expect(hold.code, text(hold)).toBe(0);
    const run = await runCli(["retention", "--now", "2026-04-15T00:00:00Z"], env);
    expect(run.code, text(run)).toBe(0);
    const left = await t.pool.query("SELECT to_regclass('public.readings_p202412') IS NOT NULL AS there");
    expect(left.rows[0].there).toBe(true);
    expect((await runCli(["unhold", "public.readings_p202412"], env)).code).toBe(0);
  });

  it("a partition retention archived: held (being recovered)", async () => {
    await t.pool.query(`
      CREATE SCHEMA IF NOT EXISTS telemetry_archive;
      CREATE TABLE telemetry_archive.readings_p202411 (ts timestamptz NOT NULL, v int);
      COMMENT ON TABLE telemetry_archive.readings_p202411 IS 'telemetry-jobs retention: archived from public.readings at 2026-01-01T00:00:00.000Z';`);
    const hold = await runCli(
      ["hold", "telemetry_archive.readings_p202411", "--until", FUTURE, "--reason", "restore"],
      env,
    );
    expect(hold.code, text(hold)).toBe(0);
    expect((await runCli(["unhold", "telemetry_archive.readings_p202411"], env)).code).toBe(0);
  });
});
