// Retention's comments on what it takes out of a table name that table as the policy spells it,
// whatever the spelling: read back, every one gives the whole of it.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  archivedMarker,
  detachedMarker,
  markedParent,
  parseRemovalMark,
  removalMarker,
} from "../../shared/retention/removal-mark.ts";

// Names as a policy may spell them: quoted, with commas, spaces, " at ", parentheses, brackets.
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
const parent = fc.array(piece, { minLength: 1, maxLength: 12 }).map((p) => `public."${p.join("")}"`);
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

  it("a comment that is not one of them names no parent", () => {
    for (const comment of [
      "",
      "telemetry-jobs retention: removing from",
      "detached from public.t at 2026",
      "hello",
    ])
      expect(markedParent(comment)).toBeUndefined();
  });
});
