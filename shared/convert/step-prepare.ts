// Steps of prepare: what still has to be built before the swap, in order. Everything here leaves
// writes running: index builds are CONCURRENTLY, the CHECK is added NOT VALID and validated apart.
import { quoteIdentifier, quoteIdentifiers } from "../db/quote.ts";
import { type ConversionDesign, INGEST_COLUMN } from "./design.ts";
import type { ConversionState } from "./facts.ts";
import { CONVERT_BOUND_CONSTRAINT } from "./names.ts";
import { boundText, markPhaseStep, relationText, type Statement, type Step } from "./step.ts";
import { parentStep } from "./step-parent.ts";

/** What an earlier (possibly killed) prepare already built. */
export interface PrepareState {
  hasIngestColumn: boolean;
  boundCheck: ConversionState["boundCheck"];
  builtIndexes: ConversionState["builtIndexes"];
  parentExists: boolean;
}

export function prepareSteps(d: ConversionDesign, s: PrepareState): Step[] {
  const steps: Step[] = [];
  if (d.addIngestColumn && !s.hasIngestColumn) steps.push(ingestColumnStep(d));
  steps.push(...indexBuildSteps(d, s));
  if (!s.parentExists) steps.push(parentStep(d));
  // The CHECK comes last: from the moment it exists until the swap, rows at or after the boundary
  // are rejected, so that window holds only VALIDATE and the swap, not the index builds.
  if (s.boundCheck === "absent") steps.push(checkStep(d));
  if (s.boundCheck !== "valid") steps.push(validateStep(d));
  steps.push(
    markPhaseStep(d, "prepared", "mark the conversion prepared", "prepared", ["preparing", "prepared"]),
  );
  return steps;
}

export function ingestColumnStep(d: ConversionDesign): Step {
  const t = relationText(d, d.table);
  const column = quoteIdentifier(INGEST_COLUMN);
  return {
    id: "ingest-column",
    title: `add ${INGEST_COLUMN} for rollup-hourly (catalog only: a nullable column, then its default)`,
    locks: "ACCESS EXCLUSIVE on the table for a few milliseconds, under lock_timeout",
    kind: "transaction",
    statements: [
      { sql: `ALTER TABLE ${t} ADD COLUMN ${column} xid8` },
      { sql: `ALTER TABLE ${t} ALTER COLUMN ${column} SET DEFAULT pg_current_xact_id()` },
    ],
  };
}

/** The indexes prepare builds on the old table: the new and old keys, rollup-hourly's index. */
function indexBuilds(d: ConversionDesign): { name: string; columns: string[]; unique: boolean }[] {
  const builds: { name: string; columns: string[]; unique: boolean }[] = [];
  if (d.primaryKey?.changes) {
    builds.push({ name: d.names.newKeyIndex, columns: d.primaryKey.newColumns, unique: true });
    builds.push({ name: d.names.oldKeyIndex, columns: d.primaryKey.columns, unique: true });
  }
  if (d.buildIngestIndex)
    builds.push({ name: d.names.ingestIndex, columns: [INGEST_COLUMN, d.timeColumn], unique: false });
  return builds;
}

/** A build per index not valid yet; a killed build (an INVALID index) is dropped and built again. */
export function indexBuildSteps(d: ConversionDesign, s: Pick<PrepareState, "builtIndexes">): Step[] {
  const steps: Step[] = [];
  for (const b of indexBuilds(d)) {
    const state = s.builtIndexes[b.name] ?? "absent";
    if (state === "valid") continue;
    const statements: Statement[] = [];
    if (state === "invalid")
      statements.push({ sql: `DROP INDEX CONCURRENTLY IF EXISTS ${relationText(d, b.name)}` });
    statements.push({
      sql: `CREATE ${b.unique ? "UNIQUE " : ""}INDEX CONCURRENTLY ${quoteIdentifier(b.name)} ON ${relationText(d, d.table)} (${quoteIdentifiers(b.columns)})`,
    });
    steps.push({
      id: `index:${b.name}`,
      title: `${state === "invalid" ? "rebuild the interrupted" : "build"} ${b.unique ? "unique " : ""}index ${b.name} (${b.columns.join(", ")}) CONCURRENTLY`,
      locks:
        "SHARE UPDATE EXCLUSIVE on the table (writes go on); waits for transactions older than the build",
      kind: "concurrently",
      statements,
      progress: { kind: "index", index: b.name },
    });
  }
  return steps;
}

export function checkStep(d: ConversionDesign): Step {
  const column = quoteIdentifier(d.timeColumn);
  return {
    id: "check",
    title: `add CHECK (${d.timeColumn} < ${d.boundary}) NOT VALID: new rows are checked, old ones not yet`,
    locks: "ACCESS EXCLUSIVE on the table for a few milliseconds, under lock_timeout",
    kind: "transaction",
    statements: [
      {
        sql: `ALTER TABLE ${relationText(d, d.table)} ADD CONSTRAINT ${quoteIdentifier(CONVERT_BOUND_CONSTRAINT)} CHECK (${column} IS NOT NULL AND ${column} < ${boundText(d, d.boundary)}) NOT VALID`,
      },
    ],
  };
}

export function validateStep(d: ConversionDesign): Step {
  return {
    id: "validate",
    title: "VALIDATE the CHECK: one scan of the table, reads and writes go on",
    locks:
      "SHARE UPDATE EXCLUSIVE on the table for the whole scan (blocks only DDL, VACUUM and other validations)",
    kind: "transaction",
    statements: [
      {
        sql: `ALTER TABLE ${relationText(d, d.table)} VALIDATE CONSTRAINT ${quoteIdentifier(CONVERT_BOUND_CONSTRAINT)}`,
      },
    ],
    progress: { kind: "validate" },
  };
}
