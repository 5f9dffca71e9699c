// Retention's comments on what it takes out of a table name that table as the policy spells it:
// read back, every one gives the whole of it, and nothing else reads as one of them.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  archivedMarker,
  detachedMarker,
  markedParent,
  parseRemovalMark,
  removalMarker,
} from "../../shared/retention/removal-mark.ts";

// Names as a policy spells them (lower-case identifiers, schema-qualified or not), and, so that the
// reading does not rest on that restriction, names with the comments' own separators in them.
const identifier = fc.stringMatching(/^[a-z_][a-z0-9_]{0,20}$/);
const policyName = fc.oneof(
  identifier,
  fc.tuple(identifier, identifier).map(([schema, name]) => `${schema}.${name}`),
);
const piece = fc.constantFrom(
  "a",
  "Z",
  " ",
  ",",
  ", ",
  " at ",
  "(",
  ")",
  "[",
  "]",
  '"',
  ".",
  "mode drop",
  "~1 rows",
);
const oddName = fc.array(piece, { minLength: 1, maxLength: 12 }).map((p) => `public."${p.join("")}"`);
const parent = fc.oneof(policyName, oddName);
const instant = fc.date({ min: new Date("1970-01-01Z"), max: new Date("2200-01-01Z"), noInvalidDate: true });

describe("retention's marks", () => {
  it("each names its whole parent, whatever the parent's spelling", () => {
    fc.assert(
      fc.property(parent, instant, instant, fc.constantFrom("drop", "detach", "archive"), (p, a, b, mode) => {
        const [from, to] = a <= b ? [a, b] : [b, a];
        const stamp = a.toISOString();
        for (const comment of [
          removalMarker(p, mode),
          removalMarker(p, mode, { from, to, rowsEstimate: 7 }),
          removalMarker(p, mode, { from: null, to }),
          detachedMarker(p, stamp),
          detachedMarker(p, stamp, to),
          archivedMarker(p, stamp),
        ])
          expect(markedParent(comment), comment).toBe(p);
        expect(parseRemovalMark(removalMarker(p, mode, { from, to }))).toEqual({
          parent: p,
          mode,
          range: { from, to },
        });
      }),
      { numRuns: 300 },
    );
  });

  it("a mark whose range is not two instants has no range (it is never read as Invalid Date)", () => {
    for (const range of ["[x, y)", "[2026-01-01T00:00:00.000Z, y)", "[MINVALUE, soon)"])
      expect(
        parseRemovalMark(
          `telemetry-jobs retention: removing from public.readings, mode drop, range ${range}`,
        ),
      ).toEqual({ parent: "public.readings", mode: "drop" });
  });

  it("a comment that is not one of them names no parent", () => {
    for (const comment of [
      "",
      "hello",
      "telemetry-jobs retention: removing from",
      "telemetry-jobs retention: removing from public.t",
      "telemetry-jobs retention: removing from public.t, mode truncate",
      "telemetry-jobs retention: detached from public.t",
      "telemetry-jobs retention: archived from public.t at",
      "telemetry-jobs retention: archived from public.t at 2026-01-01 00:00",
      "detached from public.t at 2026-01-01T00:00:00.000Z",
    ])
      expect(markedParent(comment), comment).toBeUndefined();
  });
});
