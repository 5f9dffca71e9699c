import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { displayRelation, parseRelationText, quoteIdent } from "../../shared/db/relation.ts";

describe("relation names as text", () => {
  it("reads plain and quoted parts the way PostgreSQL does", () => {
    expect(parseRelationText("public.t_p202601")).toEqual({ schema: "public", name: "t_p202601" });
    expect(parseRelationText("Public.Readings")).toEqual({ schema: "public", name: "readings" });
    expect(parseRelationText('public."victim.old"')).toEqual({ schema: "public", name: "victim.old" });
    expect(parseRelationText('"My Schema"."a ""b"" c"')).toEqual({ schema: "My Schema", name: 'a "b" c' });
  });

  it("refuses what is not exactly schema.name", () => {
    for (const bad of [
      "t_p202601",
      "a.b.c",
      'public."open',
      "public.",
      ".t",
      'public.""',
      "public.t;drop",
      `public.${"x".repeat(64)}`,
    ])
      expect(parseRelationText(bad), bad).toBeUndefined();
  });

  it("quoteIdent leaves plain lower-case names bare and quotes the rest", () => {
    expect(quoteIdent("telemetry_points")).toBe("telemetry_points");
    expect(quoteIdent("Readings")).toBe('"Readings"');
    expect(quoteIdent('a"b')).toBe('"a""b"');
  });

  it("property: what displayRelation renders reads back as the same parts", () => {
    const part = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes("\u0000"));
    fc.assert(
      fc.property(part, part, (schema, name) => {
        expect(parseRelationText(displayRelation({ schema, name }))).toEqual({ schema, name });
      }),
      { numRuns: 500 },
    );
  });
});
