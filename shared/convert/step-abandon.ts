// Steps of revert before the swap: the table is still the one plain table; remove what prepare
// added, then record the conversion reverted.
import { quoteIdentifier } from "../db/quote.ts";
import type { ConversionDesign } from "./design.ts";
import { CONVERT_BOUND_CONSTRAINT } from "./names.ts";
import { markPhaseStep, relationText, type Step } from "./step.ts";
import { dropIndexStep } from "./step-finalize.ts";
import type { PrepareState } from "./step-prepare.ts";

export function abandonSteps(d: ConversionDesign, s: PrepareState): Step[] {
  const steps: Step[] = [];
  if (s.parentExists)
    steps.push({
      id: "drop-parent",
      title: `drop the unused partitioned parent ${d.names.parent} and its empty partitions`,
      locks: "nothing the application uses",
      kind: "transaction",
      statements: [{ sql: `DROP TABLE ${relationText(d, d.names.parent)}` }],
    });
  // The ingest_xid column and its index stay: rollup-hourly can use them on the plain table too.
  for (const name of [d.names.newKeyIndex, d.names.oldKeyIndex]) {
    if ((s.builtIndexes[name] ?? "absent") === "absent") continue;
    steps.push(dropIndexStep(d, name, `drop index ${name} CONCURRENTLY`));
  }
  if (s.boundCheck !== "absent")
    steps.push({
      id: "drop-check",
      title: `drop the CHECK ${CONVERT_BOUND_CONSTRAINT}`,
      locks: "ACCESS EXCLUSIVE on the table for a few milliseconds, under lock_timeout",
      kind: "transaction",
      statements: [
        {
          sql: `ALTER TABLE ${relationText(d, d.table)} DROP CONSTRAINT IF EXISTS ${quoteIdentifier(CONVERT_BOUND_CONSTRAINT)}`,
        },
      ],
    });
  steps.push(
    markPhaseStep(d, "reverted", "mark the conversion reverted", "reverted", ["preparing", "prepared"]),
  );
  return steps;
}
