// Step: record the conversion and its design, the first thing prepare does.
import { quoteLiteral } from "../db/quote.ts";
import type { ConversionDesign } from "./design.ts";
import { inSchema, type Step, tableKey } from "./step.ts";

/**
 * Inserts the conversion's row, or takes over a reverted one; any other recorded phase makes the
 * statement change no row, and the step rolls back.
 */
export function recordStep(d: ConversionDesign): Step {
  return {
    id: "record",
    title: "record the conversion and its design (telemetry_jobs.conversions)",
    locks: "none on the table",
    kind: "transaction",
    statements: [
      {
        sql: `INSERT INTO telemetry_jobs.conversions (table_name, phase, boundary, plan)
VALUES (${quoteLiteral(tableKey(inSchema(d, d.table)))}, 'preparing', ${quoteLiteral(d.boundary)}, ${quoteLiteral(JSON.stringify(d))}::jsonb)
ON CONFLICT (table_name) DO UPDATE SET phase = 'preparing', boundary = EXCLUDED.boundary, plan = EXCLUDED.plan,
  started_at = now(), updated_at = now()
WHERE conversions.phase = 'reverted'`,
        expectRows: 1,
      },
    ],
  };
}
