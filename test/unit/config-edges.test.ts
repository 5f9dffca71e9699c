// Configuration at its edges: the exact issues zod reports (code, path, message), anchors of the
// patterns, --now's calendar and clock checks, logging-safe database descriptions, freezing, and the
// names migrate convert derives.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { describeDatabase, parseDatabaseEnv } from "../../shared/config/database.ts";
import { ConfigError } from "../../shared/config/errors.ts";
import { formatIssues } from "../../shared/config/format.ts";
import { deepFreeze, loadPolicyFile, parseInstant, parseNow } from "../../shared/config/load.ts";
import {
  PolicyFileSchema,
  RollupPolicySchema,
  rollupTarget,
  TablePolicySchema,
} from "../../shared/config/policy.ts";
import {
  convertNames,
  derivedName,
  HISTORY_COMMENT_PREFIX,
  historyIndexName,
  temporaryIndexName,
} from "../../shared/convert/names.ts";

function issues(result: {
  success: boolean;
  error?: { issues: { code: string; path: PropertyKey[]; message: string }[] };
}) {
  expect(result.success).toBe(false);
  return result.error!.issues.map((i) => ({ code: i.code, path: i.path, message: i.message }));
}

describe("parseDatabaseEnv: patterns and issues", () => {
  it("DATABASE_URL must start with the scheme", () => {
    expect(parseDatabaseEnv({ DATABASE_URL: "postgresql://h/db" }).success).toBe(true);
    expect(issues(parseDatabaseEnv({ DATABASE_URL: "x postgres://h/db" }))).toEqual([
      {
        code: "invalid_format",
        path: ["DATABASE_URL"],
        message: "must start with postgres:// or postgresql://",
      },
    ]);
  });

  it("INSTANCE_CONNECTION_NAME is exactly project:region:instance", () => {
    const env = { DB_USER: "u", DB_NAME: "d" };
    expect(
      parseDatabaseEnv({ ...env, INSTANCE_CONNECTION_NAME: "my-proj.x:europe-west1:db-1" }).success,
    ).toBe(true);
    for (const name of ["/p:r:i", "p:r:i/", "p:r", "P:r:i"])
      expect(issues(parseDatabaseEnv({ ...env, INSTANCE_CONNECTION_NAME: name })), name).toEqual([
        {
          code: "invalid_format",
          path: ["INSTANCE_CONNECTION_NAME"],
          message: 'must look like "project:region:instance"',
        },
      ]);
  });

  it("cross-field problems are custom issues on the field to fix", () => {
    expect(
      issues(
        parseDatabaseEnv({
          DATABASE_URL: "postgres://h/db",
          INSTANCE_CONNECTION_NAME: "p:r:i",
          DB_USER: "u",
          DB_NAME: "d",
        }),
      ),
    ).toEqual([
      {
        code: "custom",
        path: ["DATABASE_URL"],
        message: "set either DATABASE_URL or INSTANCE_CONNECTION_NAME, not both",
      },
    ]);
    expect(issues(parseDatabaseEnv({}))).toEqual([
      {
        code: "custom",
        path: ["DATABASE_URL"],
        message:
          "no database configured: set DATABASE_URL=postgres://..., or INSTANCE_CONNECTION_NAME, DB_USER and DB_NAME for Cloud SQL",
      },
    ]);
    expect(issues(parseDatabaseEnv({ INSTANCE_CONNECTION_NAME: "p:r:i", DB_NAME: "d" }))).toEqual([
      { code: "custom", path: ["DB_USER"], message: "is required with INSTANCE_CONNECTION_NAME" },
    ]);
    expect(
      issues(
        parseDatabaseEnv({
          INSTANCE_CONNECTION_NAME: "p:r:i",
          DB_USER: "u",
          DB_NAME: "d",
          DB_AUTH: "PASSWORD",
        }),
      ),
    ).toEqual([
      {
        code: "custom",
        path: ["DB_PASSWORD"],
        message: "is required with DB_AUTH=PASSWORD (inject it from Secret Manager)",
      },
    ]);
    expect(
      issues(
        parseDatabaseEnv({ INSTANCE_CONNECTION_NAME: "p:r:i", DB_USER: "u", DB_NAME: "d", DB_PASSWORD: "s" }),
      ),
    ).toEqual([
      {
        code: "custom",
        path: ["DB_PASSWORD"],
        message: "must not be set with DB_AUTH=IAM (IAM database authentication uses no password)",
      },
    ]);
  });
});

describe("describeDatabase", () => {
  it("never shows a password", () => {
    expect(describeDatabase({ kind: "url", url: "postgres://alice:secret@db.example:5432/tele" })).toBe(
      "postgres://alice@db.example:5432/tele",
    );
    expect(describeDatabase({ kind: "url", url: "postgresql://db.example/tele" })).toBe(
      "postgresql://(default user)@db.example/tele",
    );
    expect(describeDatabase({ kind: "url", url: "postgres://[bad" })).toBe("DATABASE_URL (unparseable)");
    expect(
      describeDatabase({
        kind: "cloud-sql",
        instanceConnectionName: "p:r:i",
        user: "jobs@p.iam",
        database: "tele",
        ipType: "PRIVATE",
        authType: "PASSWORD",
        password: "secret",
      }),
    ).toBe("cloud-sql p:r:i db=tele user=jobs@p.iam ip=PRIVATE auth=PASSWORD");
  });
});

describe("loadPolicyFile: causes", () => {
  it("an unreadable file and invalid JSON keep the underlying error as the cause", () => {
    const dir = mkdtempSync(join(tmpdir(), "tj-config-"));
    try {
      const missing = join(dir, "missing.json");
      const read = (() => {
        try {
          loadPolicyFile({ configPath: missing, env: {} });
        } catch (e) {
          return e as ConfigError;
        }
      })();
      expect(read).toBeInstanceOf(ConfigError);
      expect(read?.message).toMatch(new RegExp(`^cannot read policy file ${missing}: ENOENT`));
      expect((read!.cause as NodeJS.ErrnoException).code).toBe("ENOENT");
      const bad = join(dir, "bad.json");
      writeFileSync(bad, "{");
      const parse = (() => {
        try {
          loadPolicyFile({ configPath: bad, env: {} });
        } catch (e) {
          return e as ConfigError;
        }
      })();
      expect(parse?.message).toMatch(new RegExp(`^policy in ${bad} is not valid JSON: `));
      expect(parse?.cause).toBeInstanceOf(SyntaxError);
      const good = join(dir, "good.json");
      writeFileSync(good, JSON.stringify({ tables: [{ table: "t", timeColumn: "ts" }] }));
      expect(loadPolicyFile({ configPath: good, env: {} }).tables[0]?.table).toBe("public.t");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("parseNow / parseInstant", () => {
  it("without --now, the real clock", () => {
    const before = Date.now();
    const now = parseNow(undefined);
    expect(now).toBeInstanceOf(Date);
    expect(now.getTime()).toBeGreaterThanOrEqual(before);
    expect(now.getTime()).toBeLessThanOrEqual(Date.now());
  });

  it("the last valid hour, minute and second; one more is refused", () => {
    expect(parseInstant("2026-01-01T23:59:59Z", "--now")).toEqual(new Date("2026-01-01T23:59:59Z"));
    for (const bad of ["2026-01-01T24:00:00Z", "2026-01-01T10:60:00Z", "2026-01-01T10:00:60Z"])
      expect(() => parseInstant(bad, "--now"), bad).toThrow(`--now ${bad}: not a valid date or time`);
  });

  it("offsets written +05:30, +0530 and +05; nothing before or after the instant", () => {
    const want = new Date("2026-01-01T04:30:00Z");
    expect(parseInstant("2026-01-01T10:00:00+05:30", "--from")).toEqual(want);
    expect(parseInstant("2026-01-01T10:00:00+0530", "--from")).toEqual(want);
    expect(parseInstant("2026-01-01T09:30:00+05", "--from")).toEqual(want);
    for (const bad of ["x2026-01-01", "2026-01-01x", "2026-01-01T10:00:00+05:3"])
      expect(() => parseInstant(bad, "--from"), bad).toThrow(
        `--from ${bad}: use an ISO-8601 instant such as 2026-11-21T00:00:00Z`,
      );
  });
});

describe("deepFreeze", () => {
  it("freezes nested objects and arrays, leaves Dates and primitives alone, returns its argument", () => {
    const when = new Date("2026-01-01T00:00:00Z");
    const value = { a: { b: [1, { c: 2 }] }, when, n: null, s: "x" };
    expect(deepFreeze(value)).toBe(value);
    expect(Object.isFrozen(value)).toBe(true);
    expect(Object.isFrozen(value.a)).toBe(true);
    expect(Object.isFrozen(value.a.b)).toBe(true);
    expect(Object.isFrozen(value.a.b[1])).toBe(true);
    expect(Object.isFrozen(when)).toBe(false);
    expect(deepFreeze(5)).toBe(5);
    expect(deepFreeze(null)).toBeNull();
    const inner = { d: 1 };
    const outer = Object.freeze({ inner });
    deepFreeze(outer);
    expect(Object.isFrozen(inner)).toBe(false); // an already frozen object is taken as done
  });
});

describe("policy schema messages", () => {
  const tableIssues = (t: Record<string, unknown>) =>
    issues(TablePolicySchema.safeParse({ table: "t", timeColumn: "ts", ...t }));

  it("retention keep: not a duration, or zero", () => {
    expect(tableIssues({ retention: { keep: "soon" } })).toEqual([
      {
        code: "custom",
        path: ["retention", "keep"],
        message:
          'must be a positive whole number and a unit, e.g. "90 days", "24 months", "1 year" (hour, day, week, month, year)',
      },
      { code: "custom", path: ["retention", "keep"], message: "must be greater than zero" },
    ]);
    expect(tableIssues({ retention: { keep: "0 days" } })).toEqual([
      { code: "custom", path: ["retention", "keep"], message: "must be greater than zero" },
    ]);
  });

  it("an identifier that is not a plain lower-case one", () => {
    expect(tableIssues({ timeColumn: "Ts" })).toEqual([
      {
        code: "invalid_format",
        path: ["timeColumn"],
        message: "must be a lower-case PostgreSQL identifier matching ^[a-z_][a-z0-9_]{0,62}$",
      },
    ]);
  });

  it("rollup metric columns listed twice; the default target", () => {
    expect(issues(RollupPolicySchema.safeParse({ metrics: { columns: ["temp", "temp"] } }))).toEqual([
      { code: "custom", path: ["metrics", "columns"], message: "lists a column twice" },
    ]);
    const rollup = RollupPolicySchema.parse({ metrics: { columns: ["temp", "hum"] } });
    expect(rollup.target).toBe("public.telemetry_rollups_hourly");
    expect(rollupTarget(rollup)).toEqual({ schema: "public", name: "telemetry_rollups_hourly" });
  });

  it("naming: missing placeholders, a long default, a bad custom template", () => {
    expect(tableIssues({ interval: "daily", naming: "{table}_{YYYY}{MM}" })).toEqual([
      {
        code: "custom",
        path: ["naming"],
        message: "a daily template needs {DD} so that every partition gets its own name",
      },
    ]);
    const long = "t".repeat(60);
    expect(tableIssues({ table: long })).toEqual([
      {
        code: "custom",
        path: ["naming"],
        message: `the default template "{table}_p{YYYY}{MM}" renders names like "${long}_p202612" (68 characters), longer than PostgreSQL's 63; set "naming" to a shorter template, e.g. "t_p{YYYY}{MM}"`,
      },
    ]);
    expect(tableIssues({ naming: "{table}-{YYYY}{MM}" })).toEqual([
      {
        code: "custom",
        path: ["naming"],
        message:
          'renders names like "t-202612", which is not a lower-case identifier of at most 63 characters',
      },
    ]);
  });

  it("every missing placeholder is named", () => {
    expect(tableIssues({ interval: "hourly", naming: "{table}_{YYYY}{MM}" })[0]?.message).toBe(
      "a hourly template needs {DD}, {HH} so that every partition gets its own name",
    );
  });

  it("a bad table name is reported alone: the naming checks need a table to render", () => {
    const found = tableIssues({ table: "Bad", naming: "{table}" });
    expect(found.map((i) => i.path)).toEqual([["table"]]);
  });

  it("a table listed twice is a custom issue on the second entry", () => {
    expect(
      issues(
        PolicyFileSchema.safeParse({
          tables: [
            { table: "t", timeColumn: "ts" },
            { table: "public.t", timeColumn: "ts" },
          ],
        }),
      ),
    ).toEqual([{ code: "custom", path: ["tables", 1, "table"], message: "public.t is listed twice" }]);
  });
});

describe("formatIssues and identifiers", () => {
  it("a path that starts with an index joins the prefix without a dot", () => {
    const r = PolicyFileSchema.safeParse({ tables: [{ table: "t", timeColumn: "ts", premake: -1 }] });
    expect(r.success).toBe(false);
    const tables = r.error!.issues.map((i) => ({ ...i, path: i.path.slice(1) }));
    expect(formatIssues({ issues: tables } as never, "tables")).toBe(
      "  - tables[0].premake: Too small: expected number to be >=0",
    );
    expect(formatIssues({ issues: [{ ...tables[0]!, path: ["premake"] }] } as never, "tables[0]")).toBe(
      "  - tables[0].premake: Too small: expected number to be >=0",
    );
  });
});

describe("names migrate convert derives", () => {
  it("the history comment prefix and the per-index suffixes are fixed", () => {
    expect(HISTORY_COMMENT_PREFIX).toBe("telemetry-jobs convert:");
    expect(historyIndexName("points_pkey")).toBe("points_pkey_hist");
    expect(temporaryIndexName("points_pkey")).toBe("points_pkey_cnv");
    expect(convertNames("points")).toEqual({
      parent: "points_partitioned",
      history: "points_history",
      newKeyIndex: "points_convert_key",
      oldKeyIndex: "points_convert_oldkey",
      ingestIndex: "points_ingest_xid_idx",
    });
  });

  it("exactly 63 bytes fit as they are; one more is cut and tagged with a hash of the whole base", () => {
    const base58 = "a".repeat(58);
    expect(derivedName(base58, "_hist")).toBe(`${base58}_hist`);
    const base60 = "a".repeat(60);
    expect(derivedName(base60, "_hist")).toBe(`${"a".repeat(51)}_cc7ed6_hist`);
    expect(Buffer.byteLength(derivedName(base60, "_hist"))).toBe(63);
  });
});
