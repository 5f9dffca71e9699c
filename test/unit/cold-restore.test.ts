// The pure parts of telemetry-jobs restore: value text for the load (floats bit for bit), the
// refusal rules over a catalog, where the export root comes from, the hold advice, and the
// command's own usage errors (exit 2 before any connection).
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { holdAdvice } from "../../shared/cold/restore-attach.ts";
import { exportRootOf } from "../../shared/cold/restore-locate.ts";
import { type AttachFacts, decideAttach, RestoreRefused } from "../../shared/cold/restore-plan.ts";
import { floatText, loadText } from "../../shared/cold/restore-values.ts";
import { PolicyFileSchema } from "../../shared/config/policy.ts";
import type { ChildPartition, TableCatalog } from "../../shared/partitions/catalog.ts";

describe("floatText", () => {
  it("reads back as the same double, sign of zero and NaN included", () => {
    fc.assert(
      fc.property(fc.double(), (d) => {
        const back = Number(floatText(d));
        expect(Object.is(back, d) || (Number.isNaN(back) && Number.isNaN(d))).toBe(true);
      }),
    );
    expect([Number.NaN, Infinity, -Infinity, -0].map(floatText)).toEqual([
      "NaN",
      "Infinity",
      "-Infinity",
      "-0",
    ]);
  });

  it("a single read into a double rounds back to the same single", () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (f) => {
        expect(Object.is(Math.fround(Number(floatText(f))), f)).toBe(true);
      }),
    );
  });
});

describe("loadText", () => {
  it("decimals from their two's-complement bytes, exactly", () => {
    const column = {
      name: "n",
      pgType: "numeric(38,10)",
      kind: "decimal" as const,
      precision: 38,
      scale: 10,
    };
    expect(loadText(column, Uint8Array.from([0xff, 0xff]))).toBe("-0.0000000001");
    expect(loadText(column, null)).toBeNull();
  });
});

const JAN = { from: new Date("2026-01-01T00:00:00Z"), to: new Date("2026-02-01T00:00:00Z") };
const TARGET = { schema: "public", name: "t_p202601" };
const STAGING = { schema: "public", name: "tj_restore_0123456789abcdef" };

function child(name: string, from: string, to: string): ChildPartition {
  return {
    schema: "public",
    name,
    bound: { kind: "range", from: new Date(from), to: new Date(to) },
    boundText: `FOR VALUES FROM ('${from}') TO ('${to}')`,
    rowEstimate: 0,
    bytes: 0,
    detachPending: false,
  };
}

function facts(children: ChildPartition[], over: Partial<AttachFacts> = {}): AttachFacts {
  const catalog = {
    table: { schema: "public", name: "t" },
    oid: 1,
    keyColumn: "ts",
    keyType: "timestamptz",
    children,
    defaultPartition: undefined,
    defaultBuckets: [{ start: new Date("2026-01-01T00:00:00Z"), rows: 7 }],
    defaultNullKeyRows: 0,
    columns: ["ts"],
  } satisfies TableCatalog;
  return { catalog, target: "absent", targetHasRows: false, staging: "absent", ...over };
}

describe("decideAttach", () => {
  const feb = child("t_p202602", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z");

  it("attaches beside neighbours, counting DEFAULT's rows of the range", () => {
    expect(decideAttach(facts([feb]), TARGET, STAGING, JAN)).toEqual({
      kind: "attach",
      replaceEmpty: false,
      dropLeftover: false,
      defaultRows: 7,
    });
  });

  it("refuses any live child overlapping the range, whatever its name", () => {
    const week = child("t_w", "2026-01-10T00:00:00Z", "2026-01-17T00:00:00Z");
    expect(() => decideAttach(facts([week]), TARGET, STAGING, JAN)).toThrow(RestoreRefused);
    const wide = child("t_q", "2025-12-01T00:00:00Z", "2026-03-01T00:00:00Z");
    expect(() => decideAttach(facts([wide]), TARGET, STAGING, JAN)).toThrow(
      /covered by the live partition public\.t_q/,
    );
  });

  it("takes the place of an empty partition of exactly the range, refuses one that holds rows", () => {
    const jan = child("t_p202601", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
    expect(decideAttach(facts([jan], { target: "child" }), TARGET, STAGING, JAN).replaceEmpty).toBe(true);
    expect(() =>
      decideAttach(facts([jan], { target: "child", targetHasRows: true }), TARGET, STAGING, JAN),
    ).toThrow(/which holds rows/);
    const other = child("t_jan", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
    expect(() => decideAttach(facts([other]), TARGET, STAGING, JAN)).toThrow(
      /covered by the live partition public\.t_jan/,
    );
  });

  it("drops the library's empty standalone leftover first; refuses other tables and foreign staging names", () => {
    expect(decideAttach(facts([], { target: "standalone" }), TARGET, STAGING, JAN).dropLeftover).toBe(true);
    expect(() =>
      decideAttach(facts([], { target: "standalone", targetHasRows: true }), TARGET, STAGING, JAN),
    ).toThrow(/already exists/);
    expect(() => decideAttach(facts([], { target: "other" }), TARGET, STAGING, JAN)).toThrow(
      /already exists/,
    );
    expect(() => decideAttach(facts([], { staging: "other" }), TARGET, STAGING, JAN)).toThrow(
      /not made by a restore/,
    );
  });
});

describe("exportRootOf", () => {
  const policy = (retention?: unknown) =>
    PolicyFileSchema.parse({
      tables: [{ table: "public.t", timeColumn: "ts", ...(retention ? { retention } : {}) }],
    }).tables[0]!;

  it("--root first, then the retention policy's export.to, else none", () => {
    const exporting = policy({ keep: "90 days", mode: "export", export: { to: "/mnt/cold" } });
    expect(exportRootOf(exporting, "/tmp/copy")).toBe("/tmp/copy");
    expect(exportRootOf(exporting, undefined)).toBe("/mnt/cold");
    expect(exportRootOf(policy({ keep: "90 days" }), undefined)).toBeUndefined();
    expect(exportRootOf(policy(), undefined)).toBeUndefined();
  });
});

describe("holdAdvice", () => {
  it("gives a hold command a shell runs as is, quoting a name that needs it", () => {
    const now = new Date("2026-06-01T00:00:00Z");
    const exporting = { keep: "90 days", mode: "export", export: { to: "/mnt/cold" } };
    const retention = PolicyFileSchema.parse({
      tables: [{ table: "public.t", timeColumn: "ts", retention: exporting }],
    }).tables[0]!.retention;
    const advice = holdAdvice({ schema: "public", name: "Odd Name" }, now, retention);
    expect(advice).toContain(
      `telemetry-jobs hold 'public."Odd Name"' --until 2026-07-01 --reason 'restored from the cold tier'`,
    );
    expect(advice).toContain("without exporting it again");
    expect(holdAdvice({ schema: "public", name: "t_p202601" }, now, undefined)).toBe(
      "restored public.t_p202601",
    );
  });
});

describe("restore command line", () => {
  function cli(args: string[]) {
    const r = spawnSync(process.execPath, ["--import", "tsx", "jobs/cli.ts", "restore", ...args], {
      encoding: "utf8",
      timeout: 60_000,
      env: {
        ...process.env,
        DATABASE_URL: "",
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [{ table: "public.t", timeColumn: "ts" }] }),
      },
    });
    return { code: r.status, out: r.stdout + r.stderr };
  }

  it("--help, and usage errors exit 2 before connecting", () => {
    const help = cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("Usage: telemetry-jobs restore --table T (--partition NAME | --from ISO)");
    expect(cli(["--table", "public.t", "--root", "/tmp"])).toMatchObject({ code: 2 });
    expect(cli(["--table", "public.t", "--partition", "t_p202601"]).out).toContain("give --root DIR");
    expect(cli(["--table", "public.other", "--partition", "x", "--root", "/tmp"]).out).toContain(
      "not in the policy",
    );
  });
});
