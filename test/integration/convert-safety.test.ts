// `migrate convert` safety: tables it cannot convert safely are refused by preflight (exit 2,
// naming the objects) with nothing changed; --dry-run changes nothing; a real CLI process killed
// (SIGKILL) at every step of every phase leaves a working table, and the same command run again
// converges on the same result as an uninterrupted run; an interrupted CREATE INDEX CONCURRENTLY
// is rebuilt; owned sequences and grants keep working.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type CliRun, runCli, startCli } from "../support/jobs.ts";
import { createLegacyTable, legacyTable, tableChecksum } from "../support/legacy-tables.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

function policy(table: string, extra: Record<string, unknown> = {}) {
  return { table, timeColumn: "ts", interval: "monthly", premake: 2, ...extra };
}
function envFor(policies: unknown[]) {
  return { DATABASE_URL: t.url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: policies }) };
}
const messages = (lines: { message: unknown }[]) => lines.map((l) => String(l.message)).join("\n");

/** Everything convert could change in a schema, with the schema's name masked. */
async function catalogOf(schema: string) {
  const rels = await t.pool.query(
    `SELECT c.relname, c.relkind::text, c.relispartition, pg_get_expr(c.relpartbound, c.oid) AS bound,
            obj_description(c.oid, 'pg_class') AS comment
       FROM pg_class c WHERE c.relnamespace = $1::regnamespace ORDER BY 1`,
    [schema],
  );
  const cons = await t.pool.query(
    `SELECT c.relname, k.conname, k.convalidated, pg_get_constraintdef(k.oid) AS def
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
      WHERE c.relnamespace = $1::regnamespace AND k.contype <> 'n' ORDER BY 1, 2`,
    [schema],
  );
  const idx = await t.pool.query(
    `SELECT c.relname, pg_get_indexdef(c.oid) AS def, x.indisvalid
       FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
      WHERE c.relnamespace = $1::regnamespace ORDER BY 1`,
    [schema],
  );
  const cols = await t.pool.query(
    `SELECT c.relname, a.attname, a.attidentity::text, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS def
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY 1, a.attnum`,
    [schema],
  );
  const conv = await t.pool.query(
    "SELECT phase FROM telemetry_jobs.conversions WHERE split_part(table_name, '.', 1) = $1",
    [schema],
  );
  return JSON.parse(
    JSON.stringify({
      rels: rels.rows,
      cons: cons.rows,
      idx: idx.rows,
      cols: cols.rows,
      conv: conv.rows,
    }).replaceAll(schema, "S"),
  );
}

describe("preflight refuses what cannot be converted safely, naming the objects, changing nothing", () => {
  const base = `(id bigint PRIMARY KEY, ts timestamptz NOT NULL, v float8)`;
  const cases: { name: string; setup: string[]; expect: RegExp; table?: string; timeColumn?: string }[] = [
    {
      name: "an incoming foreign key",
      setup: [
        `CREATE TABLE r1.points ${base}`,
        "CREATE TABLE r1.alerts (id int PRIMARY KEY, point_id bigint REFERENCES r1.points (id))",
      ],
      expect: /foreign keys to this table.*r1\.alerts\.alerts_point_id_fkey/s,
    },
    {
      name: "a dependent view",
      setup: [
        `CREATE TABLE r2.points ${base}`,
        "CREATE VIEW r2.recent AS SELECT * FROM r2.points WHERE v > 0",
      ],
      expect: /views depend on this table: r2\.recent/,
    },
    {
      name: "a time column that allows NULL",
      setup: ["CREATE TABLE r3.points (id bigint PRIMARY KEY, ts timestamptz, v float8)"],
      expect: /column "ts" is not NOT NULL: r3\.points\.ts/,
    },
    {
      name: "a trigger",
      setup: [
        `CREATE TABLE r4.points ${base}`,
        "CREATE FUNCTION r4.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
        "CREATE TRIGGER points_touch BEFORE INSERT ON r4.points FOR EACH ROW EXECUTE FUNCTION r4.touch()",
      ],
      expect: /triggers.*points_touch ON r4\.points/s,
    },
    {
      name: "a table that is already partitioned",
      setup: ["CREATE TABLE r5.points (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)"],
      expect: /r5\.points is already partitioned/,
    },
    {
      name: "a unique constraint without the time column (unless --drop-unique)",
      setup: [
        `CREATE TABLE r6.points (id bigint PRIMARY KEY, ts timestamptz NOT NULL, msg text, UNIQUE (msg))`,
      ],
      expect: /unique constraints without the time column.*points_msg_key: UNIQUE \(msg\).*--drop-unique/s,
    },
  ];

  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const schema = /r\d/.exec(c.setup[0]!)![0];
      await t.pool.query(`CREATE SCHEMA ${schema}`);
      for (const s of c.setup) await t.pool.query(s);
      await t.pool
        .query(`INSERT INTO ${schema}.points (id, ts) VALUES (1, now() - interval '3 days')`)
        .catch(() => {});
      const before = await catalogOf(schema);
      const env = envFor([policy(`${schema}.points`)]);
      for (const phase of ["preflight", "prepare", undefined]) {
        const run = await runCli(
          ["migrate", "convert", ...(phase ? [phase] : []), "--table", `${schema}.points`],
          env,
        );
        expect(run.code, messages(run.lines)).toBe(2);
        expect(messages(run.lines)).toMatch(c.expect);
        expect(messages(run.lines)).toMatch(/nothing was changed/);
      }
      expect(await catalogOf(schema)).toEqual(before);
    });
  }

  it("bad usage exits 2 before connecting: unknown phase, missing --table, a boundary that is not an interval start", async () => {
    const env = { ...envFor([policy("r1.points")]), DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" };
    const cases: [string[], RegExp][] = [
      [["migrate", "convert", "sideways", "--table", "r1.points"], /unknown phase "sideways"/],
      [["migrate", "convert", "preflight"], /--table is required/],
      [["migrate", "convert", "--table", "r9.nowhere"], /--table r9\.nowhere: not in the policy file/],
      [
        ["migrate", "convert", "--table", "r1.points", "--boundary", "2030-01-15T00:00:00Z"],
        /is not the start of a monthly interval/,
      ],
    ];
    for (const [args, pattern] of cases) {
      const run = await runCli(args, env);
      expect(run.code).toBe(2);
      expect(messages(run.lines)).toMatch(pattern);
      expect(messages(run.lines)).not.toMatch(/ECONNREFUSED|connect/);
    }
  });
});

describe("--dry-run prints every statement and changes nothing", () => {
  it("for the whole conversion and for each phase", async () => {
    const table = legacyTable("edgewatch", "dry");
    await createLegacyTable(t.pool, table, 2_000, 60);
    const before = await catalogOf("dry");
    const env = envFor([policy(table.qualified, { rollup: {} })]);
    const drop = ["--drop-unique", "telemetry_points_device_message_key"];
    const all = await runCli(["migrate", "convert", "--table", table.qualified, ...drop, "--dry-run"], env);
    expect(all.code, messages(all.lines)).toBe(0);
    const text = messages(all.lines);
    expect(text).toMatch(/ADD CONSTRAINT "telemetry_jobs_convert_bound" CHECK .* NOT VALID/);
    expect(text).toMatch(/VALIDATE CONSTRAINT/);
    expect(text).toMatch(/CREATE UNIQUE INDEX CONCURRENTLY "telemetry_points_convert_key" .*\("id", "ts"\)/);
    expect(text).toMatch(/PARTITION BY RANGE \("ts"\)/);
    expect(text).toMatch(/ATTACH PARTITION "dry"\."telemetry_points_history" FOR VALUES FROM \(MINVALUE\)/);
    for (const phase of ["prepare", "swap", "finalize", "revert"]) {
      const run = await runCli(
        ["migrate", "convert", phase, "--table", table.qualified, ...drop, "--dry-run"],
        env,
      );
      expect([0, 2]).toContain(run.code);
    }
    expect(await catalogOf("dry")).toEqual(before);
  });
});

describe("a convert killed at any step leaves a working table, and the same command finishes it", () => {
  const steps = [
    "convert-after-record",
    "convert-after-prepare-step:ingest-column",
    "convert-after-prepare-step:check",
    "convert-after-prepare-step:validate",
    "convert-after-prepare-step:index:telemetry_points_convert_key",
    "convert-after-prepare-step:index:telemetry_points_convert_oldkey",
    "convert-after-prepare-step:index:telemetry_points_ingest_xid_idx",
    "convert-after-prepare-step:parent",
    "convert-after-prepare-step:prepared",
    "convert-before-swap",
  ];
  const drop = ["--drop-unique", "telemetry_points_device_message_key"];

  async function convertSchema(
    schema: string,
    faultPoint?: string,
  ): Promise<{ rows: number; checksum: string }> {
    const table = legacyTable("edgewatch", schema);
    await createLegacyTable(t.pool, table, 5_000, 60);
    const before = await tableChecksum(t.pool, table);
    const env = envFor([policy(table.qualified, { rollup: {} })]);
    const args = ["migrate", "convert", "--table", table.qualified, ...drop];
    if (faultPoint) {
      const run = startCli(args, { ...env, TELEMETRY_JOBS_FAULT_PAUSE: faultPoint });
      await run.waitFor("paused at fault point");
      run.child.kill("SIGKILL");
      await run.done;
      // The table works while the conversion is half done.
      await t.pool.query(
        `INSERT INTO ${table.qualified} (device_id, message_id, ts, metrics) VALUES ('dev-1', 'between', now(), '{}')`,
      );
      await t.pool.query(`DELETE FROM ${table.qualified} WHERE message_id = 'between'`);
    }
    const rerun = await runCli(args, env);
    expect(rerun.code, messages(rerun.lines)).toBe(0);
    expect(await tableChecksum(t.pool, table)).toEqual(before);
    return before;
  }

  it("converges to what an uninterrupted conversion builds, after a kill at each step", async () => {
    await convertSchema("k_ref");
    const reference = await catalogOf("k_ref");
    expect(reference.conv).toEqual([{ phase: "swapped" }]);
    for (const [i, point] of steps.entries()) {
      const schema = `k_${i}`;
      await convertSchema(schema, point);
      expect({ point, catalog: await catalogOf(schema) }).toEqual({ point, catalog: reference });
    }
  }, 240_000);

  async function holdingLock(table: string, body: () => Promise<void>) {
    const blocker = new pg.Client({ connectionString: t.url });
    await blocker.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query(`SELECT count(*) FROM ${table}`);
      await body();
    } finally {
      await blocker.query("ROLLBACK").catch(() => {});
      await blocker.end();
    }
  }

  async function killWhileRetrying(args: string[], env: Record<string, string>, table: string) {
    let run: CliRun | undefined;
    await holdingLock(table, async () => {
      run = startCli([...args, "--lock-timeout-ms", "50", "--retry-budget-ms", "600000"], env);
      await run.waitFor("lock not available within lock_timeout");
      run.child.kill("SIGKILL");
      await run.done;
    });
  }

  it("a swap, a revert and a finalize killed mid-way leave a working table; running them again finishes", async () => {
    const table = legacyTable("edgewatch", "k_swap");
    await createLegacyTable(t.pool, table, 5_000, 60);
    const before = await tableChecksum(t.pool, table);
    const env = envFor([policy(table.qualified)]);
    const run = async (phase: string) =>
      await runCli(["migrate", "convert", phase, "--table", table.qualified, ...drop], env);
    expect((await run("prepare")).code).toBe(0);

    await killWhileRetrying(
      ["migrate", "convert", "swap", "--table", table.qualified, ...drop],
      env,
      table.qualified,
    );
    const kind = async () =>
      (await t.pool.query("SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", [table.qualified]))
        .rows[0].relkind;
    expect(await kind()).toBe("r");
    expect((await run("swap")).code).toBe(0);
    expect(await kind()).toBe("p");

    await t.pool.query(
      `INSERT INTO ${table.qualified} (device_id, message_id, ts, metrics) VALUES ('dev-1', 'x', now() + interval '2 months', '{}')`,
    );
    const withNew = await tableChecksum(t.pool, table);
    await killWhileRetrying(
      ["migrate", "convert", "revert", "--table", table.qualified],
      env,
      table.qualified,
    );
    expect(await kind()).toBe("p");
    expect(await tableChecksum(t.pool, table)).toEqual(withNew);
    expect((await run("revert")).code).toBe(0);
    expect(await kind()).toBe("r");
    expect(await tableChecksum(t.pool, table)).toEqual(withNew);

    // Convert again (the new row is inside the next boundary), then a finalize killed after its first step.
    await t.pool.query(`DELETE FROM ${table.qualified} WHERE message_id = 'x'`);
    expect(await tableChecksum(t.pool, table)).toEqual(before);
    expect((await runCli(["migrate", "convert", "--table", table.qualified, ...drop], env)).code).toBe(0);
    const fin = startCli(["migrate", "convert", "finalize", "--table", table.qualified], {
      ...env,
      TELEMETRY_JOBS_FAULT_PAUSE: "convert-after-prepare-step:drop:telemetry_points_device_message_key",
    });
    await fin.waitFor("paused at fault point");
    fin.child.kill("SIGKILL");
    await fin.done;
    expect((await run("finalize")).code).toBe(0);
    const left = await t.pool.query(
      "SELECT relname FROM pg_class WHERE relnamespace = 'k_swap'::regnamespace AND relname IN ('telemetry_points_device_message_key', 'telemetry_points_convert_oldkey')",
    );
    expect(left.rows).toEqual([]);
    expect((await run("revert")).code).toBe(2); // finalized: no way back
    expect(await tableChecksum(t.pool, table)).toEqual(before);
  }, 120_000);

  it("an interrupted CREATE INDEX CONCURRENTLY (an INVALID index) is dropped and rebuilt", async () => {
    const table = legacyTable("sensor_readings", "k_cic");
    await createLegacyTable(t.pool, table, 5_000, 60);
    const env = envFor([{ ...policy(table.qualified), timeColumn: "recorded_at" }]);
    // A prepare killed while it builds the index: stop it just before, then build and interrupt
    // the index the way a killed build leaves it.
    const killed = startCli(["migrate", "convert", "--table", table.qualified], {
      ...env,
      TELEMETRY_JOBS_FAULT_PAUSE: "convert-after-record",
    });
    await killed.waitFor("paused at fault point");
    killed.child.kill("SIGKILL");
    await killed.done;
    // A CIC waits for transactions older than it; cancelling it there leaves the index INVALID.
    const old = new pg.Client({ connectionString: t.url });
    const builder = new pg.Client({ connectionString: t.url });
    await old.connect();
    await builder.connect();
    try {
      await old.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await old.query("SELECT 1 FROM k_cic.units LIMIT 1");
      const pid = (await builder.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      const build = builder
        .query(
          "CREATE UNIQUE INDEX CONCURRENTLY sensor_readings_convert_key ON k_cic.sensor_readings (id, recorded_at)",
        )
        .catch((e: Error) => e);
      for (let i = 0; i < 100; i++) {
        const w = await t.pool.query("SELECT 1 FROM pg_stat_progress_create_index WHERE pid = $1", [pid]);
        if (w.rows.length > 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 200));
      await t.pool.query("SELECT pg_cancel_backend($1)", [pid]);
      expect(String(await build)).toMatch(/cancel/);
    } finally {
      await old.query("ROLLBACK").catch(() => {});
      await old.end();
      await builder.end();
    }
    const invalid = await t.pool.query(
      "SELECT indisvalid FROM pg_index WHERE indexrelid = 'k_cic.sensor_readings_convert_key'::regclass",
    );
    expect(invalid.rows).toEqual([{ indisvalid: false }]);

    const run = await runCli(["migrate", "convert", "--table", table.qualified], env);
    expect(run.code, messages(run.lines)).toBe(0);
    expect(messages(run.lines)).toMatch(/rebuild the interrupted unique index sensor_readings_convert_key/);
  });
});

describe("a table changed between prepare and swap", () => {
  it("swap refuses (exit 2) naming the change; revert removes what prepare built; prepare and swap then work", async () => {
    const table = legacyTable("sensor_readings", "drift");
    await createLegacyTable(t.pool, table, 2_000, 60);
    const env = envFor([{ ...policy(table.qualified), timeColumn: "recorded_at" }]);
    const run = async (phase: string) =>
      await runCli(["migrate", "convert", phase, "--table", table.qualified], env);
    expect((await run("prepare")).code).toBe(0);
    await t.pool.query("ALTER TABLE drift.sensor_readings ADD COLUMN firmware text");
    const refused = await run("swap");
    expect(refused.code).toBe(2);
    expect(messages(refused.lines)).toMatch(/changed since prepare \(columns added: firmware\).*revert/);
    expect((await run("revert")).code).toBe(0);
    const leftovers = await t.pool.query(
      "SELECT relname FROM pg_class WHERE relnamespace = 'drift'::regnamespace AND relname LIKE 'sensor_readings_%' ORDER BY 1",
    );
    expect(leftovers.rows.map((r) => r.relname)).toEqual([
      "sensor_readings_device_time_idx",
      "sensor_readings_id_seq",
      "sensor_readings_pkey",
    ]);
    expect((await runCli(["migrate", "convert", "--table", table.qualified], env)).code).toBe(0);
    const cols = await t.pool.query(
      "SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'drift.sensor_readings'::regclass AND attname = 'firmware'",
    );
    expect(cols.rows[0].n).toBe(1);
  });
});

describe("owned sequences and grants", () => {
  it("a serial key keeps counting after the swap, the sequence moves to the partitioned table, grants are copied", async () => {
    await t.pool.query("CREATE SCHEMA g");
    await t.pool.query(
      "DO $$BEGIN CREATE ROLE telemetry_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$",
    );
    await t.pool.query("CREATE TABLE g.points (id serial PRIMARY KEY, ts timestamptz NOT NULL, v float8)");
    await t.pool.query(
      "INSERT INTO g.points (ts, v) SELECT now() - g * interval '1 hour', g FROM generate_series(1, 1000) g",
    );
    await t.pool.query("GRANT SELECT, INSERT ON g.points TO telemetry_reader");
    const run = await runCli(["migrate", "convert", "--table", "g.points"], envFor([policy("g.points")]));
    expect(run.code, messages(run.lines)).toBe(0);
    const next = await t.pool.query("INSERT INTO g.points (ts, v) VALUES (now(), 0) RETURNING id");
    expect(next.rows[0].id).toBe(1001);
    const owner = await t.pool.query("SELECT pg_get_serial_sequence('g.points', 'id') AS seq");
    expect(owner.rows[0].seq).toBe("g.points_id_seq");
    const grants = await t.pool.query(
      "SELECT has_table_privilege('telemetry_reader', 'g.points', 'SELECT') AS s, has_table_privilege('telemetry_reader', 'g.points', 'INSERT') AS i",
    );
    expect(grants.rows[0]).toEqual({ s: true, i: true });
    // Retention dropping the historical partition must not take the sequence with it.
    await t.pool.query("ALTER TABLE g.points DETACH PARTITION g.points_history");
    await t.pool.query("DROP TABLE g.points_history");
    const after = await t.pool.query(
      "INSERT INTO g.points (ts, v) VALUES (now() + interval '2 months', 0) RETURNING id",
    );
    expect(after.rows[0].id).toBe(1002);
  });
});
