// Detaching expired children together, while readers of those children (an export reading an old
// month by name, say) let go of them one after another: writers of the table must not wait for
// each child in turn behind the job's lock on the parent. Bounded means: no insert waits longer
// than about one lock wait. Counted as inserts over a threshold well above one wait and well below
// the sum of the readers' staggered releases; nothing asserts how long the job took.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RemovePartition } from "../../shared/retention/remove.ts";
import { removeTogether } from "../../shared/retention/remove-together.ts";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { captureLogger, makeConfig } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
const EXPIRED = ["2025-10", "2025-11", "2025-12", "2026-01"];
let seq = 0;

/** l_N(id, ts): monthly children 2025-10 .. 2026-03 (the first four expire), rows in each; DEFAULT if asked. */
async function table(withDefault: boolean): Promise<string> {
  const name = `l_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id bigint NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)`,
  );
  for (const m of [...EXPIRED, "2026-02", "2026-03"]) {
    const from = new Date(`${m}-01T00:00:00Z`);
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    await t.pool.query(
      `CREATE TABLE public.${name}_p${m.replace("-", "")} PARTITION OF public.${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
    );
  }
  if (withDefault)
    await t.pool.query(`CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT`);
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, '2025-10-01'::timestamptz + g * interval '36 hours' FROM generate_series(0, 99) g`,
  );
  return name;
}

function actions(name: string, concurrently: boolean): RemovePartition[] {
  return EXPIRED.map((m) => {
    const from = new Date(`${m}-01T00:00:00Z`);
    return {
      kind: "remove_partition",
      partition: { schema: "public", name: `${name}_p${m.replace("-", "")}` },
      from,
      to: new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1)),
      rowsEstimate: 0,
      bytes: 0,
      mode: "drop",
      concurrently,
    };
  });
}

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: t.url, options: "-c TimeZone=UTC" });
  await c.connect();
  return c;
}

/**
 * Removes the expired children while a reader holds each of them (in an open transaction) and
 * lets go `stepMs` after the one before, and a writer inserts current rows into the parent all
 * along. Returns the outcome and the writer's insert latencies.
 */
async function removeUnderReaders(name: string, lockTimeoutMs: number, stepMs: number) {
  const config = makeConfig(
    t.url,
    [
      {
        table: `public.${name}`,
        timeColumn: "ts",
        lockTimeoutMs,
        retryBudgetMs: 20_000,
        retention: { keep: "1 month" },
      },
    ],
    { now: NOW },
  );
  const { log } = captureLogger("retention");
  const readers = await Promise.all(EXPIRED.map(() => client()));
  for (const [i, r] of readers.entries()) {
    await r.query("BEGIN");
    await r.query(`SELECT count(*) FROM ONLY public.${name}_p${EXPIRED[i]!.replace("-", "")}`);
  }
  const writer = await client();
  const latencies: number[] = [];
  let stop = false;
  const writing = (async () => {
    for (let i = 1; !stop; i++) {
      const t0 = performance.now();
      await writer.query(`INSERT INTO public.${name} VALUES ($1, '2026-02-15T00:00:00Z')`, [1_000 + i]);
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  try {
    await new Promise((r) => setTimeout(r, 100));
    const releases = readers.map(
      (r, i) =>
        new Promise<void>((done) => setTimeout(() => r.query("COMMIT").then(() => done()), stepMs * (i + 1))),
    );
    const outcome = await removeTogether(
      {
        db: t.db,
        policy: config.policies[0]!,
        log,
        signal: new AbortController().signal,
        now: new Date(NOW),
      },
      actions(name, !(await hasDefault(name))),
    );
    await Promise.all(releases);
    await new Promise((r) => setTimeout(r, 100));
    return { outcome, latencies };
  } finally {
    stop = true;
    await writing;
    for (const c of [...readers, writer]) await c.end();
  }
}

async function hasDefault(name: string): Promise<boolean> {
  const r = await t.pool.query(
    "SELECT partdefid <> 0 AS has FROM pg_partitioned_table WHERE partrelid = $1::regclass",
    [`public.${name}`],
  );
  return r.rows[0].has as boolean;
}

describe("detaching expired children together while readers hold them", () => {
  it("with a DEFAULT partition: writers wait for at most one lock wait, not one per child; all are removed", async () => {
    const name = await table(true);
    // Each reader lets go within one lock wait (300 ms) of the one before: waiting for each child
    // in turn with the parent held would stall writers for about 4 x 200 ms.
    const { outcome, latencies } = await removeUnderReaders(name, 300, 200);
    expect(latencies.length).toBeGreaterThan(10);
    expect(latencies.filter((ms) => ms > 550)).toEqual([]);
    expect(outcome).not.toBe("busy");
    expect((await partitionsOf(t.url, `public.${name}`)).map((p) => p.name)).toEqual([
      `${name}_default`,
      `${name}_p202602`,
      `${name}_p202603`,
    ]);
  });

  it("without one: the plain attempt gives up at once (DETACH CONCURRENTLY then), writers never wait for the children", async () => {
    const name = await table(false);
    // The plain attempt waits at most 100 ms for a lock; waiting for each child in turn would stall
    // writers for about 4 x 90 ms.
    const { outcome, latencies } = await removeUnderReaders(name, 2_000, 90);
    expect(latencies.length).toBeGreaterThan(10);
    expect(latencies.filter((ms) => ms > 250)).toEqual([]);
    expect(outcome).toBe("busy");
    expect(await partitionsOf(t.url, `public.${name}`)).toHaveLength(6);
  });
});
