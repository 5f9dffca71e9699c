import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { policyJsonSchema } from "../../shared/config/json-schema.ts";

describe("docs/policy.schema.json", () => {
  it("is up to date with the zod schema (run `npm run schema:policy`)", () => {
    const committed = JSON.parse(
      readFileSync(new URL("../../docs/policy.schema.json", import.meta.url), "utf8"),
    );
    expect(committed).toEqual(policyJsonSchema());
  });

  it("describes the fields an editor should complete", () => {
    const schema = policyJsonSchema() as any;
    const table = schema.properties.tables.items;
    expect(table.required).toEqual(["table", "timeColumn"]);
    expect(table.properties.interval.enum).toEqual([
      "hourly",
      "daily",
      "weekly",
      "monthly",
      "quarterly",
      "yearly",
    ]);
    expect(table.properties.premake.default).toBe(3);
    expect(table.additionalProperties).toBe(false);
  });
});
