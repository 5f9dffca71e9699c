// A DEFAULT rescue holds ACCESS EXCLUSIVE on the parent for the whole move, so every reader and
// writer waits for it, longer the more rows moved. Above the policy's maxRescueRows the run refuses
// the rescue instead: it moves nothing (every row stays visible, in DEFAULT), makes the rest of its
// plan, logs CRIT with the command to run the rescue deliberately, and exits 2. Meanwhile a writer
// of that very range and a reader counting it go on: no insert fails, no count comes up short, and
// no session waits on a lock for as long as lockTimeoutMs. The deliberate run then moves them all.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../shared/config/errors.ts";
import { DEFAULT_MAX_RESCUE_ROWS } from "../../shared/partitions/plan-rescue.ts";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-11-21T00:00:00Z";
const ROWS = DEFAULT_MAX_RESCUE_ROWS + 1;
const LOCK_TIMEOUT_MS = 2_000;
const NOVEMBER = "ts >= '2026-11-01Z' AND ts < '2026-12-01Z'";

/** Until stopped: inserts November rows (every 10 ms), counts November, samples both sessions' lock waits. */
function concurrentLoad() {
  let running = true;
  const stats = { inserted: 0, failed: 0, reads: 0, shortReads: 0, samples: 0, longestWaitMs: 0 };
  const session = async () => {
    const c = new pg.Client({ connectionString: t.url, options: "-c TimeZone=UTC" });
    await c.connect();
    return c;
  };
  const loops = (async () => {
    const [writer, reader, monitor] = await Promise.all([session(), session(), session()]);
    const pids = [writer, reader].map((c) => (c as unknown as { processID: number }).processID);
    const write = async () => {
      for (let i = 0; running; i++) {
        try {
          await writer.query("INSERT INTO public.rr VALUES ($1, '2026-11-20T12:00:00Z', 0)", [-1 - i]);
          stats.inserted++;
        } catch {
          stats.failed++;
        }
        // Paced like ingestion, not a tight loop: an attach waits for an insert routed to DEFAULT.
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const read = async () => {
      while (running) {
        const committed = stats.inserted; // rows committed before this statement starts
        const r = await reader.query(`SELECT count(*)::int AS n FROM public.rr WHERE ${NOVEMBER}`);
        stats.reads++;
        if (r.rows[0].n < ROWS + committed) stats.shortReads++;
      }
    };
    const sample = async () => {
      while (running) {
        const r = await monitor.query(
          `SELECT coalesce(max(extract(epoch FROM clock_timestamp() - waitstart) * 1000), 0)::float8 AS ms
             FROM pg_locks WHERE NOT granted AND pid = ANY($1)`,
          [pids],
        );
        stats.samples++;
        stats.longestWaitMs = Math.max(stats.longestWaitMs, r.rows[0].ms);
      }
    };
    try {
      await Promise.all([write(), read(), sample()]);
    } finally {
      await Promise.all([writer.end(), reader.end(), monitor.end()]);
    }
  })();
  return {
    stats,
    async stop() {
      running = false;
      await loops;
      return stats;
    },
  };
}

/** What a failed assertion on the exit code should show: stderr and every line above INFO. */
function problems(run: Awaited<ReturnType<typeof runCli>>): string {
  const loud = run.lines.filter((l) => l.severity !== "INFO" && l.severity !== "DEBUG");
  return [run.stderr, ...loud.map((l) => JSON.stringify(l))].join("\n");
}

describe("a DEFAULT rescue above maxRescueRows", () => {
  it("is refused (exit 2, CRIT with the command), moves nothing, and the rest of the plan is made", async () => {
    await t.pool.query(
      "CREATE TABLE public.rr (id int NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts)",
    );
    await t.pool.query("CREATE TABLE public.rr_default PARTITION OF public.rr DEFAULT");
    // November 2026 has no partition (partition-manager was down): its rows sit in DEFAULT.
    await t.pool.query(
      `INSERT INTO public.rr SELECT g, '2026-11-01Z'::timestamptz + (g % 1728000) * interval '1 second', g
         FROM generate_series(1, ${ROWS}) g`,
    );
    const policy = { table: "public.rr", timeColumn: "ts", premake: 2, lockTimeoutMs: LOCK_TIMEOUT_MS };

    const load = concurrentLoad();
    let refused: Awaited<ReturnType<typeof runCli>>;
    try {
      while (load.stats.reads < 3 || load.stats.inserted < 3) await new Promise((r) => setTimeout(r, 10));
      refused = await runCli(["partition-manager", "--now", NOW], {
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
      });
    } finally {
      await load.stop();
    }
    const { stats } = load;
    expect(refused.code, problems(refused)).toBe(EXIT.usage);
    const crit = refused.lines.find((l) => l.finding === "rescue_refused");
    // The writer's rows count too: at least ROWS, all of November.
    const counted = Number(/: (\d+) of its rows are in the DEFAULT partition/.exec(crit?.message ?? "")?.[1]);
    expect(counted).toBeGreaterThanOrEqual(ROWS);
    expect(crit?.message).toContain(`more than maxRescueRows (${DEFAULT_MAX_RESCUE_ROWS})`);
    const command = /run once: (telemetry-jobs partition-manager .*?)\. See /.exec(crit?.message ?? "")?.[1];
    expect(command).toMatch(/^telemetry-jobs partition-manager --table public\.rr --max-rescue-rows \d+$/);
    expect(crit?.message).toContain("docs/runbooks/partition-manager.md");
    const health = refused.lines.find((l) => l.event === "table_health");
    expect(health?.verdict).toBe("CRIT");

    // Nothing moved, everything else made.
    expect((await partitionsOf(t.url, "public.rr")).map((p) => p.name)).toEqual([
      "rr_default",
      "rr_p202612",
      "rr_p202701",
    ]);
    const inDefault = await t.pool.query(
      `SELECT count(*)::int AS n FROM ONLY public.rr_default WHERE ${NOVEMBER}`,
    );
    expect(inDefault.rows[0].n).toBe(ROWS + stats.inserted);
    expect(stats.inserted).toBeGreaterThan(0);
    expect(stats.failed).toBe(0);
    expect(stats.reads).toBeGreaterThan(0);
    expect(stats.shortReads).toBe(0);
    expect(stats.samples).toBeGreaterThan(0);
    expect(stats.longestWaitMs).toBeLessThan(LOCK_TIMEOUT_MS);

    // The deliberate run the finding names, as it names it.
    const total = ROWS + stats.inserted;
    const bound = Number(command?.split(" ").at(-1));
    expect(bound).toBeGreaterThanOrEqual(total);
    const deliberate = await runCli(["partition-manager", "--now", NOW, ...command!.split(" ").slice(2)], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
    });
    expect(deliberate.code, problems(deliberate)).toBe(EXIT.ok);
    const after = await t.pool.query(
      `SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM public.rr WHERE ${NOVEMBER} GROUP BY 1`,
    );
    expect(after.rows).toEqual([{ part: "rr_p202611", n: total }]);
  }, 120_000);
});
