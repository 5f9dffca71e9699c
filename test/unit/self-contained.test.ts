// The project's design notes live beside the repository, not in it: a clone does not have them. So
// no file of the project may send a reader there; what it needs from them, it says itself.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

const OUTSIDE_NOTES = /\b(?:DESIGN|POSTGRES|STYLE)\.md\b|\.\.\/shared\//;

it("no tracked file cites the design notes that sit outside the repository", () => {
  const files = execFileSync("git", ["ls-files", "-z"], { encoding: "utf8" })
    .split("\0")
    .filter((f) => /\.(ts|mjs|md|tf|json|yaml|sh)$/.test(f) && f !== "package-lock.json");
  expect(files.length).toBeGreaterThan(100);
  const citing = files.filter((f) => {
    let text: string;
    try {
      text = readFileSync(f, "utf8");
    } catch {
      return false; // listed but deleted in the working tree
    }
    // Relative imports of the project's own shared/ library are code, not citations.
    const ownImport = /(?:from|import|import\()\s*"(?:\.\.\/)+shared\//;
    return text.split("\n").some((line) => OUTSIDE_NOTES.test(line) && !ownImport.test(line));
  });
  expect(citing).toEqual([]);
});
