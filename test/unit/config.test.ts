import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatabaseEnv } from "../../shared/config/database.ts";
import { ConfigError, isConfigError } from "../../shared/config/errors.ts";
import { formatIssues } from "../../shared/config/format.ts";
import { loadDatabaseSettings, loadPolicyFile, parseNow, selectTables } from "../../shared/config/load.ts";
import { PolicyFileSchema, type TablePolicy } from "../../shared/config/policy.ts";

const POINTS = { table: "telemetry_points", timeColumn: "recorded_at" };

/** The ConfigError thrown by `fn`; fails the test when it throws nothing or something else. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError, nothing was thrown");
}

/** The policy error for `tables` given inline, as the job would report it. */
function policyError(file: unknown): string {
  return configError(() => loadPolicyFile({ env: { TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify(file) } }))
    .message;
}

/** The formatted issue lines only (the ConfigError message adds a header line). */
function issueLines(message: string): string[] {
  return message.split("\n").slice(1);
}

describe("ConfigError", () => {
  it("exits 2 and is recognised", () => {
    const e = new ConfigError("bad");
    expect(e.exitCode).toBe(2);
    expect(e.name).toBe("ConfigError");
    expect(e).toBeInstanceOf(Error);
    expect(isConfigError(e)).toBe(true);
    expect(isConfigError(new Error("bad"))).toBe(false);
  });
});

describe("PolicyFileSchema", () => {
  it("fills in the defaults", () => {
    const parsed = PolicyFileSchema.parse({ tables: [POINTS] });
    expect(parsed.tables).toEqual([
      {
        table: "public.telemetry_points",
        timeColumn: "recorded_at",
        interval: "monthly",
        premake: 3,
        naming: "{table}_p{YYYY}{MM}",
        defaultPartition: true,
        lockTimeoutMs: 2000,
        retryBudgetMs: 60_000,
        partitioned: true,
      },
    ]);
  });

  it("the default naming template follows the interval", () => {
    const parsed = PolicyFileSchema.parse({
      tables: [
        { ...POINTS, interval: "weekly" },
        { table: "other.t", timeColumn: "ts", interval: "hourly" },
      ],
    });
    expect(parsed.tables.map((t) => t.naming)).toEqual([
      "{table}_p{IYYY}w{WW}",
      "{table}_p{YYYY}{MM}{DD}{HH}",
    ]);
    expect(parsed.tables[1]?.table).toBe("other.t");
  });

  it("accepts a $schema key and an explicit naming template", () => {
    const parsed = PolicyFileSchema.parse({
      $schema: "./policy.schema.json",
      tables: [{ ...POINTS, naming: "{table}_y{YYYY}m{MM}" }],
    });
    expect(parsed.tables[0]?.naming).toBe("{table}_y{YYYY}m{MM}");
  });
});

describe("loadPolicyFile: each error names its field", () => {
  it("unknown interval", () => {
    const lines = issueLines(policyError({ tables: [{ ...POINTS, interval: "fortnightly" }] }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ {2}- tables\[0\]\.interval: /);
    expect(lines[0]).toContain('"monthly"');
  });

  it("premake -1", () => {
    const lines = issueLines(policyError({ tables: [{ ...POINTS, premake: -1 }] }));
    expect(lines).toEqual([expect.stringMatching(/^ {2}- tables\[0\]\.premake: .*>=0/)]);
  });

  it("premake that is not an integer, or too large", () => {
    expect(policyError({ tables: [{ ...POINTS, premake: 1.5 }] })).toContain("tables[0].premake:");
    expect(policyError({ tables: [{ ...POINTS, premake: 1001 }] })).toContain("tables[0].premake:");
  });

  it("lockTimeoutMs out of range", () => {
    expect(policyError({ tables: [{ ...POINTS, lockTimeoutMs: 5 }] })).toContain("tables[0].lockTimeoutMs:");
  });

  it.each([
    ["a quote", "telemetry'points"],
    ["a double quote", 'telemetry"points'],
    ["a semicolon", "telemetry_points;drop table x"],
    ["upper case", "Telemetry_points"],
    ["three parts", "a.b.c"],
    ["an empty schema", ".telemetry_points"],
  ])("a table name with %s", (_what, table) => {
    const lines = issueLines(policyError({ tables: [POINTS, { ...POINTS, table }] }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ {2}- tables\[1\]\.table: must be "table" or "schema\.table"/);
  });

  it("a time column that needs quoting", () => {
    expect(policyError({ tables: [{ ...POINTS, timeColumn: 'ts"; --' }] })).toContain(
      "tables[0].timeColumn:",
    );
  });

  it("an unknown key in a table (strict)", () => {
    const lines = issueLines(policyError({ tables: [{ ...POINTS, premak: 3 }] }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ {2}- tables\[0\]: .*"premak"/);
  });

  it("an unknown key at the top level (strict)", () => {
    const lines = issueLines(policyError({ tables: [POINTS], table: "x" }));
    expect(lines).toEqual([expect.stringMatching(/^ {2}- \(root\): .*"table"/)]);
  });

  it.each([
    ["monthly", "{table}_p{YYYY}", "{MM}"],
    ["daily", "{table}_p{YYYY}{MM}", "{DD}"],
    ["hourly", "{table}_p{YYYY}{MM}{DD}", "{HH}"],
    ["weekly", "{table}_p{YYYY}w{WW}", "{IYYY}"],
    ["quarterly", "{table}_p{YYYY}{MM}", "{Q}"],
    ["yearly", "{table}_current", "{YYYY}"],
  ])("a %s naming template %s, missing %s", (interval, naming, missing) => {
    const lines = issueLines(policyError({ tables: [{ ...POINTS, interval, naming }] }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ {2}- tables\[0\]\.naming: /);
    expect(lines[0]).toContain(missing);
  });

  it("a naming template that renders an invalid or too long identifier", () => {
    expect(policyError({ tables: [{ ...POINTS, naming: "{table}-{YYYY}-{MM}" }] })).toContain(
      "tables[0].naming:",
    );
    const long = { table: "t".repeat(60), timeColumn: "ts" }; // 60 + "_p202612" > 63
    expect(policyError({ tables: [{ ...long, naming: "{table}_p{YYYY}{MM}" }] })).toContain(
      "tables[0].naming:",
    );
  });

  it("a table listed twice (also as public.x and x)", () => {
    const lines = issueLines(
      policyError({
        tables: [
          POINTS,
          { table: "other", timeColumn: "ts" },
          { ...POINTS, table: "public.telemetry_points" },
        ],
      }),
    );
    expect(lines).toEqual(["  - tables[2].table: public.telemetry_points is listed twice"]);
  });

  it("no tables, or tables missing", () => {
    expect(issueLines(policyError({ tables: [] }))).toEqual(["  - tables: list at least one table"]);
    expect(policyError({})).toContain("  - tables: ");
  });

  it("a missing required field", () => {
    expect(policyError({ tables: [{ table: "t" }] })).toContain("tables[0].timeColumn:");
  });

  it("reports every problem, one line each", () => {
    const lines = issueLines(
      policyError({
        tables: [
          { ...POINTS, premake: -1 },
          { ...POINTS, table: "x;y", interval: "daily!" },
        ],
      }),
    );
    expect(lines.map((l) => l.split(":")[0])).toEqual([
      "  - tables[0].premake",
      "  - tables[1].table",
      "  - tables[1].interval",
    ]);
  });
});

describe("loadPolicyFile: sources", () => {
  let dir: string;
  let path: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "telemetry-jobs-config-"));
    path = join(dir, "policy.json");
    writeFileSync(path, JSON.stringify({ tables: [{ ...POINTS, premake: 6 }] }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("--config PATH", () => {
    expect(loadPolicyFile({ configPath: path, env: {} }).tables[0]?.premake).toBe(6);
  });

  it("TELEMETRY_JOBS_CONFIG (a path)", () => {
    expect(loadPolicyFile({ env: { TELEMETRY_JOBS_CONFIG: path } }).tables[0]?.premake).toBe(6);
  });

  it("TELEMETRY_JOBS_CONFIG_JSON (inline)", () => {
    const env = { TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [POINTS] }) };
    expect(loadPolicyFile({ env }).tables[0]?.table).toBe("public.telemetry_points");
  });

  it("no source", () => {
    const e = configError(() => loadPolicyFile({ env: {} }));
    expect(e.message).toMatch(/^no policy file: pass --config PATH/);
    expect(e.exitCode).toBe(2);
  });

  it.each([
    [
      { configPath: "/x.json", env: { TELEMETRY_JOBS_CONFIG: "/y.json" } },
      "--config and TELEMETRY_JOBS_CONFIG",
    ],
    [
      { configPath: "/x.json", env: { TELEMETRY_JOBS_CONFIG_JSON: "{}" } },
      "--config and TELEMETRY_JOBS_CONFIG_JSON",
    ],
    [
      { env: { TELEMETRY_JOBS_CONFIG: "/y.json", TELEMETRY_JOBS_CONFIG_JSON: "{}" } },
      "TELEMETRY_JOBS_CONFIG and TELEMETRY_JOBS_CONFIG_JSON",
    ],
  ])("two sources at once: %j", (source, names) => {
    const e = configError(() => loadPolicyFile(source));
    expect(e.message).toBe(`policy given more than once (${names}): keep exactly one source`);
  });

  it("a file that cannot be read", () => {
    const missing = join(dir, "missing.json");
    const e = configError(() => loadPolicyFile({ configPath: missing, env: {} }));
    expect(e.message).toContain(`cannot read policy file ${missing}`);
  });

  it("invalid JSON, inline or in a file", () => {
    const inline = configError(() => loadPolicyFile({ env: { TELEMETRY_JOBS_CONFIG_JSON: "{tables: []}" } }));
    expect(inline.message).toMatch(/^policy in TELEMETRY_JOBS_CONFIG_JSON is not valid JSON: /);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, '{"tables": [');
    const file = configError(() => loadPolicyFile({ configPath: bad, env: {} }));
    expect(file.message).toMatch(new RegExp(`^policy in ${bad.replaceAll(".", "\\.")} is not valid JSON: `));
  });

  it("a schema error names the source", () => {
    const e = configError(() =>
      loadPolicyFile({
        env: { TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [{ ...POINTS, premake: -1 }] }) },
      }),
    );
    expect(e.message.split("\n")[0]).toBe("invalid policy in TELEMETRY_JOBS_CONFIG_JSON:");
  });
});

describe("formatIssues", () => {
  it("writes array indexes in brackets and applies a prefix", () => {
    const r = PolicyFileSchema.safeParse({ tables: [{ ...POINTS, premake: -1 }] });
    expect(r.success).toBe(false);
    if (r.success) return;
    expect(formatIssues(r.error)).toMatch(/^ {2}- tables\[0\]\.premake: /);
    expect(formatIssues(r.error, "policy")).toMatch(/^ {2}- policy\.tables\[0\]\.premake: /);
  });
});

describe("parseNow", () => {
  it("uses the clock when --now is not given", () => {
    const t = new Date("2030-05-05T05:05:05Z");
    expect(parseNow(undefined, () => t)).toBe(t);
  });

  it.each([
    ["2026-11-21T10:00:00Z", "2026-11-21T10:00:00.000Z"],
    ["2026-11-21T10:00Z", "2026-11-21T10:00:00.000Z"],
    ["2026-11-21T10:00:00.250Z", "2026-11-21T10:00:00.250Z"],
    ["2026-11-21T10:00:00+02:00", "2026-11-21T08:00:00.000Z"],
    ["2026-11-21T01:00:00-05:00", "2026-11-21T06:00:00.000Z"],
    ["2026-11-21T10:00:00+05:30", "2026-11-21T04:30:00.000Z"],
    ["2026-11-21", "2026-11-21T00:00:00.000Z"],
  ])("accepts %s", (value, iso) => {
    expect(parseNow(value).toISOString()).toBe(iso);
  });

  it.each([
    "2026-11-21 10:00",
    "2026-11-21 10:00:00",
    "2026-11-21 10:00:00Z",
    "21/11/2026",
    "Sat, 21 Nov 2026 10:00:00 GMT",
    "1795000000000",
    "now",
    "",
    "2026-11-21T10",
    "2026-11-21T10:00:00 +02:00",
  ])("rejects %j, showing the expected form", (value) => {
    const e = configError(() => parseNow(value));
    expect(e.message).toBe(`--now ${value}: use an ISO-8601 instant such as 2026-11-21T00:00:00Z`);
  });

  it("a date-time without an offset is read as UTC, never in the machine's time zone", () => {
    const saved = process.env.TZ;
    process.env.TZ = "America/New_York";
    try {
      expect(new Date(2026, 10, 21).getTimezoneOffset()).not.toBe(0); // the zone change took effect
      expect(parseNow("2026-11-21T10:00:00").toISOString()).toBe("2026-11-21T10:00:00.000Z");
      expect(parseNow("2026-11-21T10:00").toISOString()).toBe("2026-11-21T10:00:00.000Z");
      expect(parseNow("2026-11-21").toISOString()).toBe("2026-11-21T00:00:00.000Z");
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it.each(["2026-13-01T00:00:00Z", "2026-11-21T25:00:00Z", "2026-11-21T10:00:00+99:99"])(
    "rejects the impossible instant %s",
    (value) => {
      expect(configError(() => parseNow(value)).message).toContain(`--now ${value}`);
    },
  );
});

describe("selectTables", () => {
  const policies = PolicyFileSchema.parse({
    tables: [POINTS, { table: "metrics.rollups", timeColumn: "bucket" }],
  }).tables as readonly TablePolicy[];

  it("no --table means every table", () => {
    expect(selectTables(policies, undefined)).toBeUndefined();
    expect(selectTables(policies, [])).toBeUndefined();
  });

  it("names are qualified (schema public by default)", () => {
    expect(selectTables(policies, ["telemetry_points", "metrics.rollups"])).toEqual([
      "public.telemetry_points",
      "metrics.rollups",
    ]);
    expect(selectTables(policies, ["public.telemetry_points"])).toEqual(["public.telemetry_points"]);
  });

  it.each(["other", "rollups", "public.rollups", "telemetry_points;", "Telemetry_points"])(
    "rejects %s, listing the configured tables",
    (raw) => {
      const e = configError(() => selectTables(policies, ["telemetry_points", raw]));
      expect(e.message).toBe(
        `--table ${raw}: not in the policy file (configured: public.telemetry_points, metrics.rollups)`,
      );
    },
  );
});

describe("parseDatabaseEnv / loadDatabaseSettings", () => {
  const CLOUD = {
    INSTANCE_CONNECTION_NAME: "my-project:europe-west1:telemetry",
    DB_USER: "jobs@my-project.iam",
    DB_NAME: "telemetry",
  };

  /** The issue lines for `env`, e.g. ["DB_PASSWORD: must not be set ..."]. */
  function issues(env: NodeJS.ProcessEnv): string[] {
    const r = parseDatabaseEnv(env);
    if (r.success) throw new Error(`expected invalid settings, got ${JSON.stringify(r.data)}`);
    return formatIssues(r.error)
      .split("\n")
      .map((l) => l.replace(/^ {2}- /, ""));
  }

  it("DATABASE_URL alone", () => {
    expect(parseDatabaseEnv({ DATABASE_URL: "postgresql://u:p@db:5432/telemetry", HOME: "/root" })).toEqual({
      success: true,
      data: { kind: "url", url: "postgresql://u:p@db:5432/telemetry" },
    });
  });

  it("DATABASE_URL must be a postgres URL", () => {
    expect(issues({ DATABASE_URL: "mysql://db/x" })).toEqual([
      "DATABASE_URL: must start with postgres:// or postgresql://",
    ]);
  });

  it("Cloud SQL with IAM (the default) and PRIVATE IP (the default)", () => {
    expect(parseDatabaseEnv(CLOUD)).toEqual({
      success: true,
      data: {
        kind: "cloud-sql",
        instanceConnectionName: "my-project:europe-west1:telemetry",
        user: "jobs@my-project.iam",
        database: "telemetry",
        ipType: "PRIVATE",
        authType: "IAM",
      },
    });
  });

  it("Cloud SQL with a password", () => {
    const r = parseDatabaseEnv({
      ...CLOUD,
      DB_AUTH: "PASSWORD",
      DB_PASSWORD: "s3cret",
      DB_IP_TYPE: "PUBLIC",
    });
    expect(r.success && r.data).toMatchObject({ authType: "PASSWORD", password: "s3cret", ipType: "PUBLIC" });
  });

  it("both DATABASE_URL and INSTANCE_CONNECTION_NAME", () => {
    expect(issues({ ...CLOUD, DATABASE_URL: "postgres://db/x" })).toEqual([
      "DATABASE_URL: set either DATABASE_URL or INSTANCE_CONNECTION_NAME, not both",
    ]);
  });

  it("neither", () => {
    expect(issues({ HOME: "/root" })).toEqual([
      expect.stringMatching(/^DATABASE_URL: no database configured/),
    ]);
  });

  it("IAM with a password", () => {
    expect(issues({ ...CLOUD, DB_PASSWORD: "s3cret" })).toEqual([
      "DB_PASSWORD: must not be set with DB_AUTH=IAM (IAM database authentication uses no password)",
    ]);
  });

  it("PASSWORD without one", () => {
    expect(issues({ ...CLOUD, DB_AUTH: "PASSWORD" })).toEqual([
      "DB_PASSWORD: is required with DB_AUTH=PASSWORD (inject it from Secret Manager)",
    ]);
  });

  it("Cloud SQL without user and database", () => {
    expect(issues({ INSTANCE_CONNECTION_NAME: CLOUD.INSTANCE_CONNECTION_NAME })).toEqual([
      "DB_USER: is required with INSTANCE_CONNECTION_NAME",
      "DB_NAME: is required with INSTANCE_CONNECTION_NAME",
    ]);
  });

  it("malformed instance name, unknown auth and IP type", () => {
    expect(issues({ ...CLOUD, INSTANCE_CONNECTION_NAME: "telemetry" })[0]).toMatch(
      /^INSTANCE_CONNECTION_NAME: must look like "project:region:instance"/,
    );
    expect(issues({ ...CLOUD, DB_AUTH: "KERBEROS" })[0]).toMatch(/^DB_AUTH: /);
    expect(issues({ ...CLOUD, DB_IP_TYPE: "INTERNAL" })[0]).toMatch(/^DB_IP_TYPE: /);
  });

  it("loadDatabaseSettings throws a ConfigError naming the variable", () => {
    const e = configError(() => loadDatabaseSettings({ ...CLOUD, DB_PASSWORD: "s3cret" }));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(
      "invalid database settings:\n  - DB_PASSWORD: must not be set with DB_AUTH=IAM (IAM database authentication uses no password)",
    );
    expect(loadDatabaseSettings({ DATABASE_URL: "postgres://db/x" })).toEqual({
      kind: "url",
      url: "postgres://db/x",
    });
  });
});

describe("parseNow: regressions", () => {
  it("rejects calendar dates that do not exist instead of rolling them over", () => {
    expect(() => parseNow("2026-02-30T00:00:00Z")).toThrow(/--now 2026-02-30/);
    expect(() => parseNow("2026-02-31")).toThrow(/--now 2026-02-31/);
    expect(parseNow("2028-02-29").toISOString()).toBe("2028-02-29T00:00:00.000Z");
  });

  it("accepts two-digit offsets", () => {
    expect(parseNow("2026-11-21T02:00:00+02").toISOString()).toBe("2026-11-21T00:00:00.000Z");
  });
});
