// Every removal is audited in the transaction that finishes it. A trigger on the audit table
// refuses the rows of done removals (a full disk, a broken trigger), and whatever the path the
// removal rolls back with its audit rows: no partition is ever gone (or labelled, or archived)
// without its audit row, and the run fails, naming the audit's error.
// - mode drop drops and audits in one transaction: every child stays attached;
// - mode detach, children with a foreign key, and leftovers of a killed run are finished in a
//   second transaction: the children stay detached and marked, and the next run finishes them.
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

/** A table `name` with two expired children of 50 rows each and a current one; audits refused. */
async function sceneRefusingAudits(name: string) {
  await t.pool.query(`
    CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.${name}_p202511 PARTITION OF public.${name} FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z');
    CREATE TABLE public.${name}_p202512 PARTITION OF public.${name} FOR VALUES FROM ('2025-12-01Z') TO ('2026-01-01Z');
    CREATE TABLE public.${name}_p202603 PARTITION OF public.${name} FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    INSERT INTO public.${name} SELECT g, '2025-11-01Z'::timestamptz + g * interval '12 hours' FROM generate_series(0, 99) g;
    INSERT INTO public.${name} VALUES (1000, '2026-03-05Z');
    CREATE OR REPLACE FUNCTION public.refuse_done() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.outcome = 'ok' THEN RAISE EXCEPTION 'audit table full (simulated)'; END IF;
        RETURN NEW;
      END $$;
    CREATE TRIGGER refuse_done BEFORE INSERT ON telemetry_jobs.job_actions
      FOR EACH ROW EXECUTE FUNCTION public.refuse_done();`);
}

async function runRefused(name: string, mode: "drop" | "detach", setup = "") {
  await sceneRefusingAudits(name);
  if (setup) await t.pool.query(setup);
  const policy = { table: `public.${name}`, timeColumn: "ts", retention: { keep: "1 month", mode } };
  try {
    return await runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-03-01T00:00:00Z" }));
  } finally {
    await t.pool.query("DROP TRIGGER refuse_done ON telemetry_jobs.job_actions");
  }
}

async function failedRows(name: string): Promise<string[]> {
  const r = await t.pool.query(
    "SELECT partition_name FROM telemetry_jobs.job_actions WHERE outcome = 'failed' AND table_name = $1",
    [`public.${name}`],
  );
  return r.rows.map((row) => row.partition_name as string);
}

it("mode drop: a refused audit write rolls the drops back; nothing is removed unaudited", async () => {
  const run = await runRefused("d", "drop");
  const shown = JSON.stringify(run.logs.map((l) => `${l.severity} ${l.message} ${l.error ?? ""}`));
  expect(run.status, shown).toBe("failed");
  const attached = await t.pool.query(
    `SELECT c.relname::text AS name, count(x.*)::int AS n
       FROM public.d x JOIN pg_class c ON c.oid = x.tableoid
      WHERE c.relname LIKE 'd_p2025%' GROUP BY 1 ORDER BY 1`,
  );
  expect(attached.rows, shown).toEqual([
    { name: "d_p202511", n: 60 },
    { name: "d_p202512", n: 40 },
  ]);
  expect(run.logs.filter((l) => /^done: /.test(l.message))).toEqual([]);
  const error = run.logs.find(
    (l) => l.severity === "ERROR" && /audit table full/.test(String(l.error ?? l.message)),
  );
  expect(error, shown).toBeDefined();
  // The failure itself is recorded (the trigger lets failed rows through), against the first removal.
  expect(await failedRows("d")).toEqual(["public.d_p202511"]);
});

/** Expired children of `name` that are detached and carry a removal mark, with their rows. */
async function markedLeftovers(name: string) {
  const r = await t.pool.query(
    `SELECT c.relname::text AS name, c.relispartition AS attached,
            obj_description(c.oid, 'pg_class') LIKE 'telemetry-jobs retention: removing from %' AS marked
       FROM pg_class c WHERE c.relname LIKE $1 AND c.relkind = 'r' ORDER BY 1`,
    [`${name}_p2025%`],
  );
  return r.rows;
}

const LEFT_MARKED = (name: string) => [
  { name: `${name}_p202511`, attached: false, marked: true },
  { name: `${name}_p202512`, attached: false, marked: true },
];

/** The next run, with audits allowed again, finishes the marked children, each audited. */
async function expectNextRunFinishes(name: string, mode: "drop" | "detach") {
  const policy = { table: `public.${name}`, timeColumn: "ts", retention: { keep: "1 month", mode } };
  const next = await runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-03-01T00:00:00Z" }));
  expect(next.exitCode).toBe(0);
  expect(next.summary.actions).toEqual({ finish_removal: 2 });
  const ok = await t.pool.query(
    "SELECT count(*)::int AS n FROM telemetry_jobs.job_actions WHERE table_name = $1 AND outcome = 'ok'",
    [`public.${name}`],
  );
  expect(ok.rows[0].n).toBe(2);
}

it("mode detach: a refused audit write rolls the labels back; the children stay marked for the next run", async () => {
  const run = await runRefused("k", "detach");
  const shown = JSON.stringify(run.logs.map((l) => `${l.severity} ${l.message} ${l.error ?? ""}`));
  expect(run.status, shown).toBe("failed");
  expect(await markedLeftovers("k"), shown).toEqual(LEFT_MARKED("k"));
  expect(run.logs.filter((l) => /^done: /.test(l.message))).toEqual([]);
  expect(await failedRows("k")).toEqual(["public.k_p202511"]);
  await expectNextRunFinishes("k", "detach");
});

it("mode drop, children with a foreign key (two transactions): a refused audit write drops nothing", async () => {
  const run = await runRefused(
    "f",
    "drop",
    `CREATE TABLE public.f_ids (id int PRIMARY KEY);
     INSERT INTO public.f_ids SELECT g FROM generate_series(0, 1000) g;
     ALTER TABLE public.f ADD FOREIGN KEY (id) REFERENCES public.f_ids (id);`,
  );
  const shown = JSON.stringify(run.logs.map((l) => `${l.severity} ${l.message} ${l.error ?? ""}`));
  expect(run.status, shown).toBe("failed");
  expect(await markedLeftovers("f"), shown).toEqual(LEFT_MARKED("f"));
  await expectNextRunFinishes("f", "drop");
  expect(await markedLeftovers("f")).toEqual([]);
});

it("a killed run's leftovers: a refused audit write leaves them marked", async () => {
  await sceneRefusingAudits("l");
  // Marked and detached, as a run killed between its two transactions leaves them.
  for (const [child, from, to] of [
    ["l_p202511", "2025-11-01T00:00:00.000Z", "2025-12-01T00:00:00.000Z"],
    ["l_p202512", "2025-12-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z"],
  ])
    await t.pool.query(
      `ALTER TABLE public.l DETACH PARTITION public.${child};
       COMMENT ON TABLE public.${child} IS 'telemetry-jobs retention: removing from public.l, mode drop, range [${from}, ${to})'`,
    );
  const policy = { table: "public.l", timeColumn: "ts", retention: { keep: "1 month", mode: "drop" } };
  let run: Awaited<ReturnType<typeof runRetention>>;
  try {
    run = await runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-03-01T00:00:00Z" }));
  } finally {
    await t.pool.query("DROP TRIGGER refuse_done ON telemetry_jobs.job_actions");
  }
  expect(run.status).toBe("failed");
  expect(await markedLeftovers("l")).toEqual(LEFT_MARKED("l"));
  await expectNextRunFinishes("l", "drop");
  expect(await markedLeftovers("l")).toEqual([]);
});
