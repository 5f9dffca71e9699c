// Steps of finalize: drop what only revert needed (the old key index, the unique constraints
// --drop-unique accepted to lose), then record that revert is no longer possible.
import { quoteIdentifier } from "../db/quote.ts";
import type { ConversionDesign } from "./design.ts";
import { markPhaseStep, relationText, type Step } from "./step.ts";

/** `present`: which of those objects still exist (finalize may have been interrupted). */
export function finalizeSteps(d: ConversionDesign, present: ReadonlySet<string>): Step[] {
  const steps: Step[] = [];
  for (const k of d.keptOnHistory) {
    if (!present.has(k.name)) continue;
    steps.push(k.isConstraint ? dropHistoryConstraintStep(d, k.name) : dropIndexStep(d, k.name));
  }
  if (d.primaryKey?.changes && present.has(d.names.oldKeyIndex)) {
    steps.push({
      ...dropIndexStep(d, d.names.oldKeyIndex),
      title: `drop ${d.names.oldKeyIndex} (the old key, kept for revert)`,
    });
  }
  steps.push(
    markPhaseStep(
      d,
      "finalized",
      "mark the conversion finalized (revert is no longer possible)",
      "finalized",
      ["swapped", "finalized"],
    ),
  );
  return steps;
}

function dropHistoryConstraintStep(d: ConversionDesign, name: string): Step {
  return {
    id: `drop:${name}`,
    title: `drop ${name} from the historical partition (the partitioned table does not enforce it)`,
    locks: "ACCESS EXCLUSIVE on the historical partition for a moment, under lock_timeout",
    kind: "transaction",
    statements: [
      {
        sql: `ALTER TABLE ${relationText(d, d.names.history)} DROP CONSTRAINT IF EXISTS ${quoteIdentifier(name)}`,
      },
    ],
  };
}

/** DROP INDEX CONCURRENTLY of an index in the table's schema (also used by abandon). */
export function dropIndexStep(d: ConversionDesign, name: string, title?: string): Step {
  return {
    id: `drop:${name}`,
    title: title ?? `drop index ${name} from the historical partition`,
    locks: "SHARE UPDATE EXCLUSIVE (CONCURRENTLY): writes go on",
    kind: "concurrently",
    statements: [{ sql: `DROP INDEX CONCURRENTLY IF EXISTS ${relationText(d, name)}` }],
  };
}
