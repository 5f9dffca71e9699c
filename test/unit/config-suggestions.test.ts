// A misspelt policy key names the key it most likely meant, at any depth; a value outside an enum is
// echoed back with the allowed values and the closest one.
import { describe, expect, it } from "vitest";
import { closest, knownKeys } from "../../shared/config/format.ts";
import { loadPolicyFile } from "../../shared/config/load.ts";
import { PolicyFileSchema } from "../../shared/config/policy.ts";

const GOOD = { table: "public.telemetry_points", timeColumn: "ts" };

function problems(table: Record<string, unknown>): string {
  try {
    loadPolicyFile({ env: { TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [GOOD, table] }) } });
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("the policy was accepted");
}

describe("policy errors that say what was meant", () => {
  it("a misspelt table key: the path and the right key", () => {
    expect(problems({ ...GOOD, premke: 3 })).toContain(
      '  - tables[1]: unknown key "premke"; did you mean "premake"?',
    );
  });

  it("a misspelt key two levels down, and the required key it left missing is not reported twice", () => {
    const text = problems({ ...GOOD, retention: { keeep: "90 days" } });
    expect(text).toContain('  - tables[1].retention: unknown key "keeep"; did you mean "keep"?');
    expect(text).not.toContain("retention.keep:");
  });

  it("a misspelt key inside a union (rollup.metrics)", () => {
    expect(problems({ ...GOOD, rollup: { metrics: { jsob: "metrics" } } })).toContain(
      '  - tables[1].rollup.metrics: unknown key "jsob"; did you mean "jsonb"?',
    );
  });

  it("case and swapped letters count as typos; a key like nothing known lists the known keys", () => {
    expect(problems({ ...GOOD, timecolumn: "ts" })).toContain(
      'tables[1]: unknown key "timecolumn"; did you mean "timeColumn"?',
    );
    expect(problems({ ...GOOD, rentetion: {} })).toContain('did you mean "retention"?');
    expect(problems({ ...GOOD, colour: "blue" })).toMatch(
      /tables\[1\]: unknown key "colour" \(known keys: table, timeColumn, interval, premake, .*rollup\)/,
    );
  });

  it("an invalid enum value is echoed with the allowed values and the closest one", () => {
    expect(problems({ ...GOOD, interval: "montly" })).toContain(
      '  - tables[1].interval: "montly" is not one of "hourly", "daily", "weekly", "monthly", "quarterly", "yearly"; did you mean "monthly"?',
    );
    expect(problems({ ...GOOD, retention: { keep: "9 days", mode: "delete" } })).toContain(
      '  - tables[1].retention.mode: "delete" is not one of "drop", "detach", "archive"',
    );
    expect(problems({ ...GOOD, interval: 7 })).toContain('tables[1].interval: 7 is not one of "hourly"');
  });

  it("a top-level typo", () => {
    expect(() =>
      loadPolicyFile({ env: { TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tabels: [GOOD] }) } }),
    ).toThrow(/ {2}- \(root\): unknown key "tabels"; did you mean "tables"\?/);
  });
});

describe("knownKeys and closest", () => {
  it("reads the keys from the schema's shapes, through arrays, defaults, optionals and transforms", () => {
    expect(knownKeys(PolicyFileSchema, [])).toEqual(["$schema", "tables"]);
    expect(knownKeys(PolicyFileSchema, ["tables", 0, "retention"])).toContain("maxDropsPerRun");
    expect(knownKeys(PolicyFileSchema, ["tables", 0, "rollup", "metrics"])).toEqual(["jsonb", "columns"]);
    expect(knownKeys(PolicyFileSchema, ["tables", 0, "premake"])).toBeUndefined();
  });

  it("suggests only what is close", () => {
    expect(closest("premke", ["premake", "partitioned"])).toBe("premake");
    expect(closest("xyz", ["premake", "keep"])).toBeUndefined();
    expect(closest("kep", ["keep", "mode"])).toBe("keep");
  });
});
