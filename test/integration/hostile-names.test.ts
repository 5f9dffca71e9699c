// Catalog names are whatever PostgreSQL allows: dots, quotes, spaces, upper case, 63 bytes. A child
// or DEFAULT partition made by hand with such a name must be acted on as that exact relation, and
// nothing else in the database may be touched. (Carried as "schema.name" text and split again on
// dots, an expired child named "victim.old" made retention comment, then drop, public.victim.)
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runCli, runPartitionManager, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01

/** quote_ident, done by PostgreSQL itself so the test does not share the code under test. */
async function q(name: string): Promise<string> {
  return (await t.pool.query("SELECT quote_ident($1) AS q", [name])).rows[0].q;
}

async function exists(schema: string, name: string): Promise<boolean> {
  const r = await t.pool.query(
    `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name],
  );
  return r.rowCount === 1;
}

async function commentOf(schema: string, name: string): Promise<string | null> {
  const r = await t.pool.query(
    `SELECT obj_description(c.oid, 'pg_class') AS d FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name],
  );
  return r.rows[0]?.d ?? null;
}

let seq = 0;
interface Scene {
  /** Each scene has a schema of its own, so that names can repeat between scenes. */
  schema: string;
  table: string;
  expiredChild: string;
  liveChild: string;
  defaultName: string;
  /** Unrelated tables named like what a dot-split would produce. */
  bystanders: string[];
}

/**
 * hs_N.h partitioned by month: an expired child (Jan 2026) and a live one (Feb 2026) with the
 * given names, a DEFAULT partition named `defaultName` holding one expired and one live row, and
 * bystander tables named after the pieces a split on "." would make of each name.
 */
async function scene(expiredChild: string, liveChild: string, defaultName: string): Promise<Scene> {
  const schema = `hs_${++seq}`;
  const table = "h";
  const parent = `${schema}.${table}`;
  await t.pool.query(`CREATE SCHEMA ${schema}`);
  await t.pool.query(
    `CREATE TABLE ${parent} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
  await t.pool.query(
    `CREATE TABLE ${schema}.${await q(expiredChild)} PARTITION OF ${parent} FOR VALUES FROM ('2026-01-01Z') TO ('2026-02-01Z')`,
  );
  await t.pool.query(
    `CREATE TABLE ${schema}.${await q(liveChild)} PARTITION OF ${parent} FOR VALUES FROM ('2026-02-01Z') TO ('2026-03-01Z')`,
  );
  await t.pool.query(`CREATE TABLE ${schema}.${await q(defaultName)} PARTITION OF ${parent} DEFAULT`);
  await t.pool.query(
    `INSERT INTO ${parent} VALUES (1, '2026-01-05Z'), (2, '2026-02-05Z'), (3, '2025-06-01Z'), (4, '2030-01-01Z')`,
  );
  // What splitting "schema.name" text on dots would name instead: schema.<first piece>, and a
  // schema named after a piece holding a table named after the next one.
  const bystanders = new Set<string>();
  for (const n of [expiredChild, liveChild, defaultName]) {
    for (const piece of n.split(".")) {
      if (piece && piece !== n && piece !== table && !(await exists(schema, piece))) bystanders.add(piece);
    }
  }
  for (const b of bystanders) {
    await t.pool.query(`CREATE TABLE ${schema}.${await q(b)} (x int)`);
    await t.pool.query(`INSERT INTO ${schema}.${await q(b)} VALUES (42)`);
  }
  return { schema, table, expiredChild, liveChild, defaultName, bystanders: [...bystanders] };
}

async function expectBystandersUntouched(s: Scene) {
  for (const b of s.bystanders) {
    expect(await exists(s.schema, b), `bystander ${b} must still exist`).toBe(true);
    expect(await commentOf(s.schema, b), `bystander ${b} must not be commented`).toBeNull();
    const rows = await t.pool.query(`SELECT x FROM ${s.schema}.${await q(b)}`);
    expect(rows.rows).toEqual([{ x: 42 }]);
  }
}

async function ids(s: Scene): Promise<number[]> {
  return (await t.pool.query(`SELECT id FROM ${s.schema}.${s.table} ORDER BY id`)).rows.map((r) => r.id);
}

const policy = (s: Scene, retention?: Record<string, unknown>) => ({
  table: `${s.schema}.${s.table}`,
  timeColumn: "ts",
  premake: 1,
  ...(retention ? { retention: { keep: "1 month", ...retention } } : {}),
});

describe("relations with names that contain dots, quotes, spaces and upper case", () => {
  it('retention drops the expired child "victim.old", never public.victim', async () => {
    const s = await scene("victim.old", "Live Feb", "Default.Part");
    const run = await runRetention(
      t.db,
      makeConfig(t.url, [policy(s, { mode: "drop", exactCutoff: true })], { now: NOW }),
    );
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(await exists(s.schema, "victim.old")).toBe(false);
    expect(s.bystanders).toContain("victim");
    await expectBystandersUntouched(s);
    // The expired DEFAULT row (id 3) and the expired child's row (id 1) are gone; the rest stays.
    expect(await ids(s)).toEqual([2, 4]);
  });

  it('a hold placed on "Victim.Old" by the CLI keeps exactly that partition', async () => {
    const s = await scene("Victim.Old", "live", "def");
    const env = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(s, { mode: "drop" })] }),
    };
    const held = await runCli(
      ["hold", `${s.schema}."Victim.Old"`, "--until", "2027-01-01T00:00:00Z", "--reason", "audit"],
      env,
    );
    expect(
      held.code,
      `${held.stderr}${JSON.stringify(held.lines.map((l) => [l.severity, l.message, l.error]))}`,
    ).toBe(0);
    const run = await runRetention(t.db, makeConfig(t.url, [policy(s, { mode: "drop" })], { now: NOW }));
    expect(run.exitCode, JSON.stringify(run.logs.map((l) => [l.severity, l.message]))).toBe(0);
    expect(await exists(s.schema, "Victim.Old")).toBe(true);
    expect(run.logs.some((l) => l.finding === "held")).toBe(true);
    expect((await runCli(["unhold", `${s.schema}."Victim.Old"`], env)).code).toBe(0);
    expect(
      await runRetention(t.db, makeConfig(t.url, [policy(s, { mode: "drop" })], { now: NOW })).then(
        (r) => r.exitCode,
      ),
    ).toBe(0);
    expect(await exists(s.schema, "Victim.Old")).toBe(false);
  });

  it("partition-manager rescues rows from a DEFAULT partition with a dotted name", async () => {
    const s = await scene("a.b", "c.d", "x.default");
    // A row for March 2026 lands in DEFAULT; partition-manager must move it into a new child.
    await t.pool.query(`INSERT INTO ${s.schema}.${s.table} VALUES (5, '2026-03-10Z')`);
    // With retention, the expired row (id 3) stays in DEFAULT: no partition is made before the cutoff.
    const run = await runPartitionManager(
      t.db,
      makeConfig(t.url, [policy(s, { mode: "drop" })], { now: NOW }),
    );
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    const inDefault = await t.pool.query(
      `SELECT id FROM ONLY ${s.schema}.${await q("x.default")} ORDER BY id`,
    );
    expect(inDefault.rows.map((r) => r.id)).toEqual([3, 4]);
    expect(await ids(s)).toEqual([1, 2, 3, 4, 5]);
    await expectBystandersUntouched(s);
  });

  it('a hand-made child named Odd.Child "x" is that exact relation to partition-manager, status and retention', async () => {
    const odd = 'Odd.Child "x"';
    const s = await scene(odd, "Live", "def");
    // Where case folding would lead: an unquoted Odd is odd.
    await t.pool.query(`CREATE TABLE ${s.schema}.odd (x int)`);
    await t.pool.query(`INSERT INTO ${s.schema}.odd VALUES (42)`);
    s.bystanders.push("odd");
    const shown = `${s.schema}.${await q(odd)}`;
    expect(shown).toBe(`${s.schema}."Odd.Child ""x"""`);
    const config = makeConfig(t.url, [policy(s, { mode: "drop" })], { now: NOW });

    // partition-manager reads its real bound: no conflict, nothing made over it, the rest premade.
    const pm = await runPartitionManager(t.db, config);
    expect(pm.exitCode, JSON.stringify(pm.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(pm.logs.filter((l) => l.partition === odd || String(l.message).includes(odd))).toEqual([]);
    expect(await exists(s.schema, odd)).toBe(true);
    expect(await exists(s.schema, "h_p202603")).toBe(true);
    await expectBystandersUntouched(s);

    // status counts it, with its bound, as one of the table's partitions.
    const status = await runCli(["status", "--json", "--now", NOW, "--table", `${s.schema}.${s.table}`], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(s, { mode: "drop" })] }),
    });
    expect(status.code, status.stderr).toBe(0);
    expect((status.lines[0] as any).tables[0]).toMatchObject({
      table: `${s.schema}.${s.table}`,
      partitions: 4,
      coveredFrom: "2026-01-01T00:00:00.000Z",
      coveredTo: "2026-05-01T00:00:00.000Z",
    });

    // retention drops exactly it, and audits it under its exact name.
    const run = await runRetention(t.db, config);
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(await exists(s.schema, odd)).toBe(false);
    // The child's row (id 1) and the expired DEFAULT row (id 3) are gone; the rest stays.
    expect(await ids(s)).toEqual([2, 4]);
    await expectBystandersUntouched(s);
    const audited = await t.pool.query(
      `SELECT partition_name, outcome FROM telemetry_jobs.job_actions WHERE kind = 'remove_partition' AND partition_name LIKE $1`,
      [`${s.schema}.%`],
    );
    expect(audited.rows).toEqual([{ partition_name: shown, outcome: "ok" }]);
  });

  it("property: for random hostile names, retention removes exactly the expired child and its expired DEFAULT row", async () => {
    const part = fc.constantFrom("victim", "Old", "a b", 'q"t', "x.y", "É", "p", "v");
    const hostile = fc
      .tuple(fc.array(part, { minLength: 1, maxLength: 4 }), fc.constantFrom(".", "", " ", ".."))
      .map(([parts, separator]) => parts.join(separator).slice(0, 40));
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(hostile, { minLength: 3, maxLength: 3, selector: (n) => n.toLowerCase() }),
        fc.constantFrom("drop", "detach", "archive"),
        async ([expired, live, def], mode) => {
          const s = await scene(expired!, live!, def!);
          const run = await runRetention(
            t.db,
            makeConfig(
              t.url,
              [policy(s, { mode, exactCutoff: true, archiveSchema: `${s.schema}_archive` })],
              {
                now: NOW,
              },
            ),
          );
          expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
          expect(await ids(s)).toEqual([2, 4]);
          const stillChild = await t.pool.query(
            `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = $1::regclass ORDER BY 1`,
            [`${s.schema}.${s.table}`],
          );
          expect(stillChild.rows.map((r) => r.relname).sort()).toEqual([live!, def!].sort());
          if (mode === "drop") expect(await exists(s.schema, expired!)).toBe(false);
          if (mode === "detach")
            expect(await commentOf(s.schema, expired!)).toMatch(/^telemetry-jobs retention: detached/);
          if (mode === "archive") expect(await exists(`${s.schema}_archive`, expired!)).toBe(true);
          await expectBystandersUntouched(s);
        },
      ),
      { numRuns: 12, seed: 4242 },
    );
  });
});
