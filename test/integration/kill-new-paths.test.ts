// SIGKILL a real job process at the delicate points of two destructive paths, then run the job
// normally: the next run must finish what the killed one started, lose no row and leave nothing
// behind (no removal mark, no guard constraint), and touch nothing else.
//
// Retention removes expired children in two transactions: one detaches and marks them all, a second
// drops, labels or archives them all. Killed between the two, or inside the second (which then rolls
// back), the children are left detached and marked; the next run finds them by their mark.
//
// partition-manager guards a large DEFAULT partition with a CHECK added NOT VALID, validated, then
// relied on by the attaches and dropped. Killed after the add, or after the attaches, the guard is
// left behind; the next run drops it first, before anything else.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_GUARD_CONSTRAINT } from "../../shared/partitions/naming.ts";
import { GUARD_MIN_DEFAULT_ROWS } from "../../shared/partitions/plan-guard.ts";
import { catalogSnapshot, partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type CliRun, makeConfig, runPartitionManager, runRetention, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

/**
 * Sessions of the CLI's job in this file's database: other files run jobs on the same server at the
 * same time, and this file's in-process runs are "telemetry-jobs/test".
 */
async function jobSessions(job: string): Promise<{ state: string }[]> {
  const r = await t.pool.query(
    "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
    [`telemetry-jobs/${job}`],
  );
  return r.rows;
}

/** SIGKILLs the paused process and waits until PostgreSQL has ended (and rolled back) its sessions. */
async function killAndSettle(cli: CliRun, job: string): Promise<void> {
  cli.child.kill("SIGKILL");
  expect((await cli.done).signal).toBe("SIGKILL");
  for (let i = 0; i < 200 && (await jobSessions(job)).length > 0; i++)
    await new Promise((r) => setTimeout(r, 50));
  expect(await jobSessions(job)).toEqual([]);
}

/** The highest job_runs id so far: runs after it are the ones a test started. */
async function lastRunId(): Promise<number> {
  const r = await t.pool.query("SELECT coalesce(max(id), 0)::int AS id FROM telemetry_jobs.job_runs");
  return r.rows[0].id;
}

/** Runs of `job` after `since`, in order, each with its audit rows for `table` in order. */
async function runsSince(since: number, job: string, table: string) {
  const r = await t.pool.query(
    `SELECT r.id, r.status,
            coalesce((SELECT json_agg(json_build_object('kind', a.kind, 'partition', a.partition_name,
                                                        'outcome', a.outcome, 'path', a.detail->>'path')
                                      ORDER BY a.id)
                        FROM telemetry_jobs.job_actions a WHERE a.run_id = r.id AND a.table_name = $3),
                     '[]') AS actions
       FROM telemetry_jobs.job_runs r WHERE r.id > $1 AND r.job = $2 ORDER BY r.id`,
    [since, job, table],
  );
  return r.rows.map((row) => ({ status: row.status as string, actions: row.actions }));
}

// ---------------------------------------------------------------------------------------------
// Retention: expired children detached together, then finished together.

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
const STAMP = new Date(NOW).toISOString();
const ARCHIVE = "telemetry_archive";
const MONTHS = ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"];
let seq = 0;

/** r_N(id, ts): monthly children 2025-11 .. 2026-03 (three expire), 100 rows over them; DEFAULT if asked. */
async function retentionTable(withDefault: boolean): Promise<string> {
  const name = `r_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
  for (const m of MONTHS) {
    const from = new Date(`${m}-01T00:00:00Z`);
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    await t.pool.query(
      `CREATE TABLE public.${name}_p${m.replace("-", "")} PARTITION OF public.${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
    );
  }
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours' FROM generate_series(0, 99) g`,
  );
  if (withDefault) {
    // Rows dated past every child: they stay in DEFAULT, which retention must leave alone.
    await t.pool.query(`CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT`);
    await t.pool.query(
      `INSERT INTO public.${name} SELECT 1000 + g, '2027-06-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 10) g`,
    );
  }
  return name;
}

const expiredOf = (name: string) => [`${name}_p202511`, `${name}_p202512`, `${name}_p202601`];
const keptOf = (name: string, withDefault: boolean) => [
  ...(withDefault ? [`${name}_default`] : []),
  `${name}_p202602`,
  `${name}_p202603`,
];

/** Rows per partition, read through the parent (relation names, whatever the search_path). */
async function rowsThroughParent(name: string): Promise<Record<string, number>> {
  const r = await t.pool.query(
    `SELECT c.relname::text AS part, count(*)::int AS n FROM public.${name} x JOIN pg_class c ON c.oid = x.tableoid
      GROUP BY 1 ORDER BY 1`,
  );
  return Object.fromEntries(r.rows.map((row) => [row.part, row.n]));
}

interface TableState {
  schema: string;
  partition: boolean;
  comment: string | null;
  rows: number;
}

/** Where a table of that name is (any schema but the catalogs), and what it holds; null: nowhere. */
async function tableState(name: string): Promise<TableState | null> {
  const r = await t.pool.query(
    `SELECT n.nspname::text AS schema, c.relispartition AS partition,
            obj_description(c.oid, 'pg_class') AS comment
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = $1 AND c.relkind = 'r'`,
    [name],
  );
  if (r.rows.length === 0) return null;
  expect(r.rows).toHaveLength(1);
  const row = r.rows[0];
  const n = await t.pool.query(`SELECT count(*)::int AS n FROM ONLY "${row.schema}"."${name}"`);
  return { schema: row.schema, partition: row.partition, comment: row.comment, rows: n.rows[0].n };
}

/** The catalog less every line about the expired children (their tables, indexes, constraints). */
async function catalogBesides(children: readonly string[]): Promise<string[]> {
  return (await catalogSnapshot(t.url)).filter((line) => !children.some((c) => line.includes(c)));
}

type Mode = "drop" | "detach" | "archive";
type RetentionPoint = "retention-after-detach" | "retention-in-finish";

// Modes detach and archive detach in one transaction and finish in a second; a kill between or in
// the second leaves marked children. Mode drop detaches, drops and audits in one transaction (see
// the cases after these); its leftovers come from the child-by-child path or an earlier version.
const RETENTION_CASES: [RetentionPoint, Mode, boolean][] = [
  ["retention-after-detach", "drop", false],
  ["retention-after-detach", "drop", true],
  ["retention-after-detach", "detach", false],
  ["retention-after-detach", "archive", false],
  ["retention-in-finish", "drop", false],
  ["retention-in-finish", "drop", true],
  ["retention-in-finish", "detach", false],
  ["retention-in-finish", "archive", false],
];

/** The finished state of an expired child, per mode (its rows: as many as before the runs). */
function finished(mode: Mode, name: string, rows: number): TableState | null {
  switch (mode) {
    case "drop":
      return null;
    case "detach":
      return {
        schema: "public",
        partition: false,
        // The range the killed run's mark carried, as a run that is not killed labels it.
        comment: expect.stringMatching(
          new RegExp(
            `^telemetry-jobs retention: detached from public\\.${name} at ${STAMP} \\(rows before \\S+\\)$`,
          ),
        ),
        rows,
      };
    case "archive":
      return {
        schema: ARCHIVE,
        partition: false,
        comment: `telemetry-jobs retention: archived from public.${name} at ${STAMP}`,
        rows,
      };
  }
}

function finishedPath(mode: Mode, child: string): string {
  return mode === "drop" ? "drop" : mode === "detach" ? "kept detached" : `moved to ${ARCHIVE}.${child}`;
}

/** A fresh table for one test, and what it held before any run. */
async function retentionScene(mode: Mode, withDefault: boolean) {
  const name = await retentionTable(withDefault);
  const expired = expiredOf(name);
  const kept = keptOf(name, withDefault);
  const rows = await rowsThroughParent(name);
  expect(Object.keys(rows).sort()).toEqual([...expired, ...kept].sort());
  for (const c of expired) expect(rows[c]).toBeGreaterThan(0);
  return {
    name,
    mode,
    expired,
    kept,
    policy: { table: `public.${name}`, timeColumn: "ts", retention: { keep: "1 month", mode } },
    expiredRows: Object.fromEntries(expired.map((c) => [c, rows[c]!])),
    keptRows: Object.fromEntries(kept.map((c) => [c, rows[c]!])),
    otherCatalog: await catalogBesides(expired),
    since: await lastRunId(),
  };
}
type Scene = Awaited<ReturnType<typeof retentionScene>>;

/**
 * Runs the retention CLI until it pauses at `pause`, checks whether a transaction is open, kills it.
 * Mode drop's leftovers (marked "mode drop", detached, not dropped) cannot come from its own one
 * transaction: they are made as the child-by-child path or an earlier version leaves them, by a
 * run in mode detach killed after its detach, whose marks then say mode drop.
 */
async function killRetentionAt(scene: Scene, pause: string, inTransaction: boolean): Promise<void> {
  const leftovers = scene.mode === "drop" && pause === "retention-after-detach";
  const policy = leftovers
    ? { ...scene.policy, retention: { keep: "1 month", mode: "detach" } }
    : scene.policy;
  const cli = startCli(["retention", "--now", NOW], {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
    TELEMETRY_JOBS_FAULT_PAUSE: pause,
  });
  await cli.waitFor("paused at fault point", 60_000);
  const open = (await jobSessions("retention")).filter((s) => s.state.startsWith("idle in transaction"));
  expect(open).toHaveLength(inTransaction ? 1 : 0);
  await killAndSettle(cli, "retention");
  if (leftovers)
    for (const c of scene.expired) {
      const comment = (await tableState(c))!.comment!;
      expect(comment).toContain(", mode detach, ");
      await t.pool.query(
        `COMMENT ON TABLE public.${c} IS '${comment.replace(", mode detach, ", ", mode drop, ")}'`,
      );
    }
}

/** What the code expects a kill to leave: every expired child detached, in public, marked, whole. */
async function expectLeftMarked(scene: Scene, killedRuns: number): Promise<void> {
  for (const c of scene.expired)
    expect(await tableState(c)).toEqual({
      schema: "public",
      partition: false,
      // With its range and rows, so that what finishes it can audit and label them.
      comment: expect.stringMatching(
        new RegExp(
          `^telemetry-jobs retention: removing from public\\.${scene.name}, mode ${scene.mode}, range \\[\\S+, \\S+\\), ~\\d+ rows$`,
        ),
      ),
      rows: scene.expiredRows[c],
    });
  expect(await rowsThroughParent(scene.name)).toEqual(scene.keptRows);
  expect((await partitionsOf(t.url, `public.${scene.name}`)).map((p) => p.name)).toEqual(scene.kept);
  expect(await runsSince(scene.since, "retention", `public.${scene.name}`)).toEqual(
    // Each run marks the killed runs before it abandoned: only the last one killed is left running.
    Array.from({ length: killedRuns }, (_, i) => ({
      status: i < killedRuns - 1 ? "abandoned" : "running",
      actions: [],
    })),
  );
}

/** A normal run finishes the marked children, audits each, and touches nothing else. */
async function expectNextRunFinishes(scene: Scene, killedRuns: number): Promise<void> {
  const { name, mode, expired } = scene;
  const next = await runRetention(t.db, makeConfig(t.url, [scene.policy], { now: NOW }));
  expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  expect(next.summary.actions).toEqual({ finish_removal: 3 });
  for (const c of expired) expect(await tableState(c)).toEqual(finished(mode, name, scene.expiredRows[c]!));
  expect(await rowsThroughParent(name)).toEqual(scene.keptRows);
  expect((await partitionsOf(t.url, `public.${name}`)).map((p) => p.name)).toEqual(scene.kept);
  // No mark of this table's is left (a mark of another test's table is that test's business).
  const marks = await t.pool.query(
    "SELECT count(*)::int AS n FROM pg_description WHERE description LIKE $1",
    [`telemetry-jobs retention: removing from public.${name},%`],
  );
  expect(marks.rows[0].n).toBe(0);
  const runs = await runsSince(scene.since, "retention", `public.${name}`);
  // The next run holds the killed runs' own locks: no process runs them, so they are abandoned.
  expect(runs.map((r) => r.status)).toEqual([...Array.from({ length: killedRuns }, () => "abandoned"), "ok"]);
  expect(runs.at(-1)!.actions).toEqual(
    expired.map((c) => ({
      kind: "finish_removal",
      partition: `public.${c}`,
      outcome: "ok",
      path: finishedPath(mode, c),
    })),
  );
  // The killed run's marks said which range each held: the audit rows of the finish say it too.
  const ranges = await t.pool.query(
    `SELECT count(*)::int AS n FROM telemetry_jobs.job_actions
      WHERE run_id = (SELECT max(id) FROM telemetry_jobs.job_runs WHERE job = 'retention')
        AND kind = 'finish_removal' AND range_to IS NOT NULL`,
  );
  expect(ranges.rows[0].n).toBe(expired.length);
  expect(await catalogBesides(expired)).toEqual(scene.otherCatalog);
  // Finished: a further run has nothing to do.
  const again = await runRetention(t.db, makeConfig(t.url, [scene.policy], { now: NOW }));
  expect(again.exitCode).toBe(0);
  expect(again.summary.actions).toEqual({});
}

describe.each(RETENTION_CASES)(
  "retention: SIGKILL at %s, mode %s, DEFAULT partition %s",
  (point, mode, withDefault) => {
    it("leaves the children detached and marked; the next run finishes them, audited, nothing else touched", async () => {
      const scene = await retentionScene(mode, withDefault);
      // Paused inside the second transaction, the job holds it open; between the two, none is open.
      // Mode drop finishes only leftovers in a second transaction: the first kill leaves them, the
      // second lands inside their finishing transaction, which rolls back too.
      const inFinish = point === "retention-in-finish";
      let killed = 0;
      if (inFinish && mode === "drop") {
        await killRetentionAt(scene, "retention-after-detach", false);
        await expectLeftMarked(scene, ++killed);
      }
      await killRetentionAt(scene, inFinish ? `${point}:${mode}` : point, inFinish);
      await expectLeftMarked(scene, ++killed);
      await expectNextRunFinishes(scene, killed);
    }, 120_000);
  },
);

describe.each([false, true])(
  "retention: SIGKILL inside mode drop's one transaction, DEFAULT partition %s",
  (withDefault) => {
    it("leaves the table as it was, unaudited; the next run removes the children, audited", async () => {
      const scene = await retentionScene("drop", withDefault);
      const catalogBefore = await catalogSnapshot(t.url);
      await killRetentionAt(scene, "retention-in-drop-together", true);
      // Nothing of the killed transaction is left: every child attached, unmarked, whole.
      expect(await rowsThroughParent(scene.name)).toEqual({ ...scene.expiredRows, ...scene.keptRows });
      for (const c of scene.expired) expect((await tableState(c))!.comment).toBeNull();
      expect(await catalogSnapshot(t.url)).toEqual(catalogBefore);
      expect(await runsSince(scene.since, "retention", `public.${scene.name}`)).toEqual([
        { status: "running", actions: [] },
      ]);
      const next = await runRetention(t.db, makeConfig(t.url, [scene.policy], { now: NOW }));
      expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
      expect(next.summary.actions).toEqual({ remove_partition: 3 });
      for (const c of scene.expired) expect(await tableState(c)).toBeNull();
      expect(await rowsThroughParent(scene.name)).toEqual(scene.keptRows);
      const runs = await runsSince(scene.since, "retention", `public.${scene.name}`);
      expect(runs.map((r) => r.status)).toEqual(["abandoned", "ok"]);
      expect(
        runs
          .at(-1)!
          .actions.map((a: { kind: string; partition: string; outcome: string }) => [
            a.kind,
            a.partition,
            a.outcome,
          ]),
      ).toEqual(scene.expired.map((c) => ["remove_partition", `public.${c}`, "ok"]));
      expect(await catalogBesides(scene.expired)).toEqual(scene.otherCatalog);
    }, 120_000);
  },
);

// ---------------------------------------------------------------------------------------------
// partition-manager: the guard on a large DEFAULT partition.

// The real clock: the executor checks how far ahead a guarded range starts against the server's.
const REAL_NOW = new Date();
const monthStart = (offset: number) =>
  new Date(Date.UTC(REAL_NOW.getUTCFullYear(), REAL_NOW.getUTCMonth() + offset, 1));
const monthName = (table: string, offset: number) => {
  const d = monthStart(offset);
  return `${table}_p${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
};

/**
 * A table with this month, the next and DEFAULT (made by a run with premake 1), and just enough
 * rows dated years ahead in DEFAULT for the guard to be planned. Returns the policy with premake 3:
 * two more months, each more than a day ahead, so both are guarded.
 */
async function guardedTable(name: string) {
  await t.pool.query(
    `CREATE TABLE public.${name} (id bigint NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts)`,
  );
  const policy = { table: `public.${name}`, timeColumn: "ts", premake: 1 };
  const first = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: REAL_NOW }));
  expect(first.exitCode).toBe(0);
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, $1::timestamptz + interval '4 years' + g * interval '1 second', g
       FROM generate_series(1, ${GUARD_MIN_DEFAULT_ROWS}) g`,
    [REAL_NOW],
  );
  await t.pool.query(`INSERT INTO public.${name} VALUES (-1, $1, 0)`, [REAL_NOW]);
  return { ...policy, premake: 3 };
}

async function guardOf(table: string): Promise<{ convalidated: boolean }[]> {
  const r = await t.pool.query(
    "SELECT convalidated FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2",
    [`public.${table}_default`, DEFAULT_GUARD_CONSTRAINT],
  );
  return r.rows;
}

async function guardRows(table: string) {
  const r = await t.pool.query(
    `SELECT (SELECT count(*)::int FROM public.${table}) AS total,
            (SELECT count(*)::int FROM ONLY public.${table}_default) AS in_default,
            (SELECT md5(string_agg(id::text || '@' || ts::text, ',' ORDER BY id)) FROM public.${table}) AS checksum`,
  );
  return r.rows[0] as { total: number; in_default: number; checksum: string };
}

/** An hour into the month `offset` months ahead: a row dated in that month's range. */
const inMonth = (offset: number) => new Date(monthStart(offset).getTime() + 3_600_000);

const monthsBefore = (table: string) => [`${table}_default`, monthName(table, 0), monthName(table, 1)];
const monthsAfter = (table: string) => [`${table}_default`, ...[0, 1, 2, 3].map((i) => monthName(table, i))];

describe("partition-manager: SIGKILL with the DEFAULT guard in place, then a normal run", () => {
  it("killed between adding the guard NOT VALID and validating it: the next run drops it, guards, attaches, drops", async () => {
    const policy = await guardedTable("gk_add");
    const rows = await guardRows("gk_add");
    expect(rows).toMatchObject({ total: GUARD_MIN_DEFAULT_ROWS + 1, in_default: GUARD_MIN_DEFAULT_ROWS });
    const since = await lastRunId();
    const cli = startCli(["partition-manager"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "guard-after-add",
    });
    await cli.waitFor("paused at fault point", 60_000);
    await killAndSettle(cli, "partition-manager");

    // Left: the guard, committed but not validated, already refusing rows of its ranges; no attach.
    expect(await guardOf("gk_add")).toEqual([{ convalidated: false }]);
    await expect(
      t.pool.query("INSERT INTO public.gk_add VALUES (-2, $1, 0)", [inMonth(3)]),
    ).rejects.toMatchObject({
      code: "23514",
    });
    expect((await partitionsOf(t.url, "public.gk_add")).map((p) => p.name)).toEqual(monthsBefore("gk_add"));
    expect(await guardRows("gk_add")).toEqual(rows);
    expect(await runsSince(since, "partition-manager", "public.gk_add")).toEqual([
      { status: "running", actions: [] },
    ]);

    const next = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: REAL_NOW }));
    expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    // The leftover is dropped first (it may refuse a range that has begun), then a new guard.
    expect(next.summary.actions).toEqual({ guard_default: 1, create_partition: 2, drop_default_guard: 2 });
    expect((await partitionsOf(t.url, "public.gk_add")).map((p) => p.name)).toEqual(monthsAfter("gk_add"));
    expect(await guardOf("gk_add")).toEqual([]);
    expect(await guardRows("gk_add")).toEqual(rows);
    const runs = await runsSince(since, "partition-manager", "public.gk_add");
    expect(runs.map((r) => r.status)).toEqual(["abandoned", "ok"]);
    expect(runs[1]!.actions.map((a: { kind: string; outcome: string }) => [a.kind, a.outcome])).toEqual([
      ["drop_default_guard", "ok"],
      ["guard_default", "ok"],
      ["create_partition", "ok"],
      ["create_partition", "ok"],
      ["drop_default_guard", "ok"],
    ]);
    // No guard refuses the month any more: its row lands in its partition.
    await t.pool.query("INSERT INTO public.gk_add VALUES (-3, $1, 0)", [inMonth(3)]);
    const landed = await t.pool.query(
      "SELECT c.relname::text AS part FROM public.gk_add x JOIN pg_class c ON c.oid = x.tableoid WHERE id = -3",
    );
    expect(landed.rows).toEqual([{ part: monthName("gk_add", 3) }]);
  }, 120_000);

  it("killed after the attaches, before the guard is dropped: the next run drops it and nothing else", async () => {
    const policy = await guardedTable("gk_drop");
    const rows = await guardRows("gk_drop");
    const since = await lastRunId();
    const cli = startCli(["partition-manager"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "guard-before-drop",
    });
    await cli.waitFor("paused at fault point", 60_000);
    await killAndSettle(cli, "partition-manager");

    // Left: both months attached, the guard valid and still there.
    expect(await guardOf("gk_drop")).toEqual([{ convalidated: true }]);
    expect((await partitionsOf(t.url, "public.gk_drop")).map((p) => p.name)).toEqual(monthsAfter("gk_drop"));
    expect(await guardRows("gk_drop")).toEqual(rows);
    const killed = await runsSince(since, "partition-manager", "public.gk_drop");
    expect(killed.map((r) => r.status)).toEqual(["running"]);
    expect(killed[0]!.actions.map((a: { kind: string; outcome: string }) => [a.kind, a.outcome])).toEqual([
      ["guard_default", "ok"],
      ["create_partition", "ok"],
      ["create_partition", "ok"],
    ]);
    // The catalog as it must end: as now, less the guard's line.
    const isGuard = (line: string) =>
      line.startsWith(`constraint ${DEFAULT_GUARD_CONSTRAINT} on gk_drop_default:`);
    const catalog = await catalogSnapshot(t.url);
    expect(catalog.filter(isGuard)).toHaveLength(1);

    const next = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: REAL_NOW }));
    expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(next.summary.actions).toEqual({ drop_default_guard: 1 });
    expect(await guardOf("gk_drop")).toEqual([]);
    expect(await catalogSnapshot(t.url)).toEqual(catalog.filter((line) => !isGuard(line)));
    expect(await guardRows("gk_drop")).toEqual(rows);
    const runs = await runsSince(since, "partition-manager", "public.gk_drop");
    expect(runs.map((r) => r.status)).toEqual(["abandoned", "ok"]);
    expect(runs[1]!.actions).toEqual([
      { kind: "drop_default_guard", partition: "gk_drop_default", outcome: "ok", path: null },
    ]);
  }, 120_000);
});
