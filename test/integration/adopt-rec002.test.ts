// Adoption of REC-002's database, end to end through the CLI: its ORM already partitions
// public.sensor_readings by month (children sensor_readings_yYYYYmMM it made itself, one from 2024,
// a DEFAULT named sensor_readings_default). telemetry-jobs installs beside it without touching
// public, partition-manager continues the application's months without touching its children, and
// retention removes only the one month past the 24 months kept. The application's own insert and
// queries work the same throughout.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Child,
  childrenOf,
  cliEnv,
  cliOk,
  createRec002,
  inheritedKeysOf,
  REC002_MONTHS,
  rec002Answers,
  rec002Insert,
} from "../support/adoption.ts";
import { schemaCatalog } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

const PARENT = "public.sensor_readings";
const NOW = "2026-11-25T12:00:00Z";
const ROWS_PER_MONTH = 3_000;
const EARLY_ROWS = 12;
const POLICY = {
  table: PARENT,
  timeColumn: "recorded_at",
  interval: "monthly",
  premake: 3,
  naming: "{table}_y{YYYY}m{MM}",
  retention: { keep: "24 months", mode: "drop" },
};

let t: TestDatabase;
let env: Record<string, string>;
// Shared by the steps, in order.
let appChildren: Child[];
let answers: Awaited<ReturnType<typeof rec002Answers>>;
let afterPartitionManager: Child[];

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  await createRec002(t.pool, ROWS_PER_MONTH);
  env = cliEnv(t.url, [POLICY]);
  appChildren = await childrenOf(t.pool, PARENT);
  // The application writes today's readings before telemetry-jobs arrives; a few devices with
  // clocks ahead wrote December readings, which its DEFAULT partition took (no December child yet).
  const own = await rec002Insert(t.pool, { unit: 3, device: 7, at: "2026-11-25T11:59:00Z", value: 21.5 });
  expect(own.partition).toBe("sensor_readings_y2026m11");
  for (let i = 0; i < EARLY_ROWS; i++) {
    const early = await rec002Insert(t.pool, {
      unit: (i % 8) + 1,
      device: (i % 5) + 1,
      at: `2026-12-0${(i % 9) + 1}T06:00:00Z`,
      value: 100 + i,
    });
    expect(early.partition).toBe("sensor_readings_default");
  }
  appChildren = await childrenOf(t.pool, PARENT);
  answers = await rec002Answers(t.pool);
}, 60_000);
afterAll(async () => {
  await t?.drop();
});

/** "sensor_readings_yYYYYmMM" for each month from `from` through `to` ("YYYY-MM"), inclusive. */
function monthNames(from: string, to: string): string[] {
  const names: string[] = [];
  const d = new Date(`${from}-01T00:00:00Z`);
  const end = new Date(`${to}-01T00:00:00Z`);
  for (; d <= end; d.setUTCMonth(d.getUTCMonth() + 1)) {
    names.push(`sensor_readings_y${d.getUTCFullYear()}m${String(d.getUTCMonth() + 1).padStart(2, "0")}`);
  }
  return names;
}

describe("adopting REC-002's partitioned sensor_readings in public", () => {
  it("the application's schema is what its ORM made", () => {
    expect(appChildren.map((c) => c.name)).toEqual(
      [
        "sensor_readings_default",
        ...REC002_MONTHS.map((m) => `sensor_readings_y${m.replace("-", "m")}`),
      ].sort(),
    );
    expect(appChildren.find((c) => c.name === "sensor_readings_default")).toMatchObject({
      bound: "DEFAULT",
      rows: EARLY_ROWS,
    });
    expect(appChildren.find((c) => c.name === "sensor_readings_y2024m03")?.rows).toBe(ROWS_PER_MONTH);
    expect(answers.deviceMonth.length).toBe(ROWS_PER_MONTH / 50);
    expect(answers.latest.length).toBe(50);
  });

  it("migrate up installs telemetry_jobs and leaves public's catalog identical", async () => {
    const before = await schemaCatalog(t.url, "public");
    await cliOk(["migrate", "up"], env);
    expect(await schemaCatalog(t.url, "public")).toEqual(before);
    expect(await childrenOf(t.pool, PARENT)).toEqual(appChildren);
  }, 60_000);

  it("partition-manager continues the application's months with its naming, indexes and foreign keys", async () => {
    const run = await cliOk(["partition-manager", "--now", NOW], env);
    const after = await childrenOf(t.pool, PARENT);
    afterPartitionManager = after;

    // The application's children are the same relations, with the same bounds and rows; DEFAULT
    // gave its December rows to the new December child.
    const byName = new Map(after.map((c) => [c.name, c]));
    for (const c of appChildren) {
      expect(byName.get(c.name)).toEqual(c.name === "sensor_readings_default" ? { ...c, rows: 0 } : c);
    }
    const december = await t.pool.query(
      `SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM public.sensor_readings
        WHERE recorded_at >= '2026-12-01T00:00:00Z' AND recorded_at < '2027-01-01T00:00:00Z' GROUP BY 1`,
    );
    expect(december.rows).toEqual([{ part: "sensor_readings_y2026m12", n: EARLY_ROWS }]);

    // New: every month missing from the retention cutoff (2024-11-25, so November 2024 is the
    // oldest month still kept) through three months past November 2026. Nothing below the cutoff.
    const created = after.filter((c) => !appChildren.some((a) => a.name === c.name));
    expect(created.map((c) => c.name)).toEqual([
      ...monthNames("2024-11", "2026-05"),
      ...monthNames("2026-12", "2027-02"),
    ]);
    for (const c of created) {
      expect(c.rows).toBe(c.name === "sensor_readings_y2026m12" ? EARLY_ROWS : 0);
      const [, y, m] = /_y(\d{4})m(\d{2})$/.exec(c.name)!;
      const from = new Date(Date.UTC(Number(y), Number(m) - 1, 1));
      const to = new Date(Date.UTC(Number(y), Number(m), 1));
      const fmt = (d: Date) => `${d.toISOString().slice(0, 10)} 00:00:00+00`;
      expect(c.bound).toBe(`FOR VALUES FROM ('${fmt(from)}') TO ('${fmt(to)}')`);
    }

    // Each new child has an attached partition index for each of the parent's four indexes (the
    // primary key included) and inherited both foreign keys, like the application's own children.
    const keys = await inheritedKeysOf(t.pool, PARENT);
    const parentIndexes = await t.pool.query(
      "SELECT count(*)::int AS n FROM pg_index WHERE indrelid = $1::regclass",
      [PARENT],
    );
    expect(parentIndexes.rows[0].n).toBe(4);
    for (const c of [...created, ...appChildren]) {
      expect({ child: c.name, ...keys.get(c.name) }).toEqual({
        child: c.name,
        indexes: 4,
        foreignKeys: ["device_id -> devices", "unit_id -> units"],
      });
    }
    const pk = await t.pool.query(
      `SELECT count(*)::int AS n FROM pg_constraint k JOIN pg_inherits i ON i.inhrelid = k.conrelid
        WHERE i.inhparent = $1::regclass AND k.contype = 'p' AND k.conparentid <> 0`,
      [PARENT],
    );
    expect(pk.rows[0].n).toBe(after.length);
    expect(run.lines.some((l) => l.severity === "ERROR")).toBe(false);
  }, 60_000);

  it("the application's inserts through the parent land in the new children, and its FKs hold", async () => {
    const dec = await rec002Insert(t.pool, { unit: 1, device: 2, at: "2026-12-01T00:00:00Z", value: 1 });
    const feb = await rec002Insert(t.pool, { unit: 2, device: 3, at: "2027-02-28T23:59:59Z", value: 2 });
    const gap = await rec002Insert(t.pool, { unit: 4, device: 5, at: "2025-07-15T08:00:00Z", value: 3 });
    expect([dec.partition, feb.partition, gap.partition]).toEqual([
      "sensor_readings_y2026m12",
      "sensor_readings_y2027m02",
      "sensor_readings_y2025m07",
    ]);
    await expect(
      rec002Insert(t.pool, { unit: 99, device: 2, at: "2027-01-10T00:00:00Z", value: 1 }),
    ).rejects.toThrow(/foreign key/);
    await expect(
      rec002Insert(t.pool, { unit: 1, device: 999, at: "2027-01-10T00:00:00Z", value: 1 }),
    ).rejects.toThrow(/foreign key/);
    await t.pool.query("DELETE FROM public.sensor_readings WHERE id = ANY ($1::bigint[])", [
      [dec.id, feb.id, gap.id],
    ]);
  });

  it("a second partition-manager run changes nothing", async () => {
    const before = await schemaCatalog(t.url, "public");
    await cliOk(["partition-manager", "--now", NOW], env);
    expect(await schemaCatalog(t.url, "public")).toEqual(before);
    expect(await childrenOf(t.pool, PARENT)).toEqual(afterPartitionManager);
  }, 60_000);

  it("retention --dry-run plans to drop sensor_readings_y2024m03 only, and changes nothing", async () => {
    const before = await schemaCatalog(t.url, "public");
    const run = await cliOk(["retention", "--now", NOW, "--dry-run"], env);
    const planned = run.lines.filter((l) => String(l.message).startsWith("would "));
    expect(planned.length, JSON.stringify(run.lines.map((l) => l.message))).toBe(1);
    expect(String(planned[0]!.message)).toContain("sensor_readings_y2024m03");
    expect(String(planned[0]!.message)).toMatch(/drop/i);
    expect(await schemaCatalog(t.url, "public")).toEqual(before);
    expect(await childrenOf(t.pool, PARENT)).toEqual(afterPartitionManager);
  }, 60_000);

  it("retention drops sensor_readings_y2024m03 and nothing else", async () => {
    const run = await cliOk(["retention", "--now", NOW], env);
    const after = await childrenOf(t.pool, PARENT);
    expect(after).toEqual(afterPartitionManager.filter((c) => c.name !== "sensor_readings_y2024m03"));
    expect(await t.pool.query("SELECT to_regclass('public.sensor_readings_y2024m03') AS r")).toMatchObject({
      rows: [{ r: null }],
    });
    const audit = await t.pool.query(
      `SELECT a.kind, a.partition_name, a.outcome, a.rows::int AS rows
         FROM telemetry_jobs.job_actions a JOIN telemetry_jobs.job_runs r ON r.id = a.run_id
        WHERE r.job = 'retention' ORDER BY a.id`,
    );
    expect(audit.rows.map((r) => [r.partition_name, r.outcome])).toEqual([
      ["public.sensor_readings_y2024m03", "ok"],
    ]);
    expect(run.lines.some((l) => l.severity === "ERROR")).toBe(false);
  }, 60_000);

  it("the application's queries answer as before, and its insert still works", async () => {
    expect(await rec002Answers(t.pool)).toEqual(answers);
    const own = await rec002Insert(t.pool, { unit: 3, device: 7, at: "2026-11-30T23:59:59Z", value: 22 });
    expect(own.partition).toBe("sensor_readings_y2026m11");
    const latest = (await rec002Answers(t.pool)).latest.find((r) => r.device_id === 7);
    expect(latest).toMatchObject({ id: own.id, value: 22 });
  });
});
