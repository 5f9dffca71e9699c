// Step: revert after the swap. In one transaction under ACCESS EXCLUSIVE: detach the historical
// partition, copy the rows written since the swap into it, hand the identity and sequences back,
// drop the partitioned table, and give the plain table its names back.
import { quoteIdentifier, quoteIdentifiers, quoteLiteral, quoteRelation } from "../db/quote.ts";
import type { ConversionDesign } from "./design.ts";
import type { ChangeTriggerFacts } from "./facts.ts";
import { CONVERT_BOUND_CONSTRAINT } from "./names.ts";
import { inSchema, phaseUpdate, relationText, type Statement, type Step } from "./step.ts";
import { continueSequence } from "./step-sequence.ts";
import { changeTriggersGuard, createChangeTriggers } from "./step-triggers.ts";

/**
 * `columns`: read from the catalog when revert runs (a column added since the swap is copied too).
 * `changeTriggers`: rollup-hourly's change triggers on the partitioned table, read when revert
 * runs; the plain table gets them back in the same transaction (they go with the partitioned table).
 */
export function revertStep(
  d: ConversionDesign,
  columns: readonly string[] = d.columns,
  changeTriggers: readonly ChangeTriggerFacts[] = [],
): Step {
  const t = relationText(d, d.table);
  const h = relationText(d, d.names.history);
  const cols = quoteIdentifiers(columns);
  const sqls: Statement[] = [
    { sql: `LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE` },
    phaseUpdate(d, "reverted", ["swapped"]),
    { sql: `ALTER TABLE ${t} DETACH PARTITION ${h}` },
    { sql: `ALTER TABLE ${h} DROP CONSTRAINT ${quoteIdentifier(CONVERT_BOUND_CONSTRAINT)}` },
    // Rows written since the swap into the new partitions (and DEFAULT) go back into the one table.
    { sql: `INSERT INTO ${h} (${cols}) SELECT ${cols} FROM ${t}` },
    ...identityToHistory(d),
  ];
  for (const s of d.ownedSequences)
    sqls.push({ sql: `ALTER SEQUENCE ${s.sequence} OWNED BY ${h}.${quoteIdentifier(s.column)}` });
  sqls.push(changeTriggersGuard(d, d.table, changeTriggers));
  sqls.push({ sql: `DROP TABLE ${t}` });
  sqls.push(...restoreIndexNames(d));
  sqls.push({ sql: `ALTER TABLE ${h} RENAME TO ${quoteIdentifier(d.table)}` });
  sqls.push(...createChangeTriggers(d, d.table, changeTriggers));
  sqls.push({ sql: `COMMENT ON TABLE ${t} IS ${d.comment === null ? "NULL" : quoteLiteral(d.comment)}` });
  return {
    id: "revert",
    title: `detach ${d.names.history}, copy the rows written since the swap into it, drop the partitioned table, and rename it back to ${d.table}`,
    locks:
      "ACCESS EXCLUSIVE on the table for one transaction, under lock_timeout, retried; it lasts as long as copying the rows written since the swap",
    kind: "transaction",
    statements: sqls,
  };
}

/** The plain table gets its identity back, continuing past the partitioned table's. */
function identityToHistory(d: ConversionDesign): Statement[] {
  if (!d.identity) return [];
  const history = inSchema(d, d.names.history);
  const generated = d.identity.kind === "a" ? "ALWAYS" : "BY DEFAULT";
  return [
    {
      sql: `ALTER TABLE ${quoteRelation(history)} ALTER COLUMN ${quoteIdentifier(d.identity.column)} ADD GENERATED ${generated} AS IDENTITY`,
    },
    continueSequence(history, inSchema(d, d.table), history, d.identity),
  ];
}

/** The indexes take their original names back; a replaced key becomes the old key again. */
function restoreIndexNames(d: ConversionDesign): Statement[] {
  const h = relationText(d, d.names.history);
  const out: Statement[] = [];
  for (const i of d.parentIndexes) {
    if (i.replacesKey && d.primaryKey) {
      out.push({ sql: `ALTER TABLE ${h} DROP CONSTRAINT ${quoteIdentifier(i.history)}` });
      out.push({
        sql: `ALTER TABLE ${h} ADD CONSTRAINT ${quoteIdentifier(d.primaryKey.name)} PRIMARY KEY USING INDEX ${quoteIdentifier(d.names.oldKeyIndex)}`,
      });
    } else {
      out.push({ sql: `ALTER INDEX ${relationText(d, i.history)} RENAME TO ${quoteIdentifier(i.original)}` });
    }
  }
  return out;
}
