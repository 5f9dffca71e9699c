// The policy file's rules for rollup targets: one writer per target, never its own source, not
// rolled up again, and a target's own entry keyed on bucket_ts. Also the shape adoption gives a
// target that does not exist yet (partitioned only when it has an entry of its own).
import { describe, expect, it } from "vitest";
import { targetShape } from "../../shared/adopt/target.ts";
import { PolicyFileSchema } from "../../shared/config/policy.ts";

const source = (table: string, target: string) => ({ table, timeColumn: "ts", rollup: { target } });

function messages(file: unknown): string[] {
  const r = PolicyFileSchema.safeParse(file);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

describe("rollup targets in the policy file", () => {
  it("accepts a target with an entry of its own keyed on bucket_ts", () => {
    expect(
      messages({
        tables: [
          source("public.a", "public.a_hourly"),
          { table: "public.a_hourly", timeColumn: "bucket_ts" },
        ],
      }),
    ).toEqual([]);
  });

  it("refuses a table that is its own target", () => {
    expect(messages({ tables: [source("public.a", "public.a")] })).toEqual([
      "tables.0.rollup.target: public.a is the table being rolled up; name another table for its hourly rollups",
    ]);
  });

  it("refuses two sources writing one target", () => {
    expect(messages({ tables: [source("public.a", "public.h"), source("public.b", "public.h")] })).toEqual([
      "tables.1.rollup.target: public.h is already the rollup target of tables[0] (public.a); each source needs a target of its own",
    ]);
  });

  it("refuses a target's entry on another time column, or with a rollup of its own", () => {
    expect(
      messages({
        tables: [
          source("public.a", "public.h"),
          { table: "public.h", timeColumn: "ts", rollup: { target: "public.hh" } },
        ],
      }),
    ).toEqual([
      "tables.1.rollup: public.h is a rollup target; rolling it up again is not supported",
      'tables.1.timeColumn: public.h is a rollup target, whose hours are in column bucket_ts: set "timeColumn": "bucket_ts"',
    ]);
  });

  it("refuses a partitioned target's entry without a DEFAULT partition (history would have nowhere to go)", () => {
    expect(
      messages({
        tables: [
          source("public.a", "public.h"),
          { table: "public.h", timeColumn: "bucket_ts", defaultPartition: false },
        ],
      }),
    ).toEqual([
      'tables.1.defaultPartition: public.h is a partitioned rollup target: it needs its DEFAULT partition for the hours before its first partition (rollup-hourly writes history); remove "defaultPartition": false',
    ]);
    expect(
      messages({
        tables: [
          source("public.a", "public.h"),
          { table: "public.h", timeColumn: "bucket_ts", partitioned: false, defaultPartition: false },
        ],
      }),
    ).toEqual([]);
  });

  it("matches a target written without its schema to the same entry (both read as public)", () => {
    expect(messages({ tables: [source("a", "h"), { table: "public.h", timeColumn: "ts" }] })).toHaveLength(1);
  });
});

describe("the shape of a target adoption creates", () => {
  const parse = (tables: unknown[]) => PolicyFileSchema.parse({ tables }).tables;

  it("is plain without an entry of its own", () => {
    const policies = parse([source("public.a", "public.a_hourly")]);
    expect(targetShape(policies[0]!, policies)).toEqual({
      target: { schema: "public", name: "a_hourly" },
      groupColumn: "device_id",
      source: { schema: "public", name: "a" },
      partitioned: false,
      defaultPartition: null,
    });
  });

  it("is partitioned, with partition-manager's DEFAULT partition, when its entry is partitioned", () => {
    const policies = parse([
      source("public.a", "rollups.a_h"),
      { table: "rollups.a_h", timeColumn: "bucket_ts" },
    ]);
    expect(targetShape(policies[0]!, policies)).toMatchObject({
      partitioned: true,
      defaultPartition: { schema: "rollups", name: "a_h_default" },
    });
  });

  it("is plain when its entry says partitioned: false", () => {
    const plain = parse([
      source("public.a", "public.h"),
      { table: "public.h", timeColumn: "bucket_ts", partitioned: false },
    ]);
    expect(targetShape(plain[0]!, plain)).toMatchObject({ partitioned: false, defaultPartition: null });
  });
});
