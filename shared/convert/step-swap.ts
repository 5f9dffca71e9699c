// Step: the swap. In one short transaction under ACCESS EXCLUSIVE: hand the identity and owned
// sequences to the parent, move rollup-hourly's change triggers, rename the indexes, rename both
// tables, and ATTACH the old table as the historical partition FROM (MINVALUE) TO (boundary). The
// valid CHECK lets ATTACH skip its scan; the prepared indexes let it adopt the old table's.
import { quoteIdentifier, quoteLiteral, quoteRelation } from "../db/quote.ts";
import { displayRelation } from "../db/relation.ts";
import type { ConversionDesign } from "./design.ts";
import type { ChangeTriggerFacts } from "./facts.ts";
import { HISTORY_COMMENT_PREFIX } from "./names.ts";
import { boundText, inSchema, phaseUpdate, relationText, type Statement, type Step } from "./step.ts";
import { continueSequence } from "./step-sequence.ts";
import { changeTriggersGuard, createChangeTriggers } from "./step-triggers.ts";

/**
 * `changeTriggers`: rollup-hourly's change triggers on the table, read when the swap runs; they
 * move to the partitioned parent in the same transaction (a statement trigger on the historical
 * partition would see only statements naming that partition), so every UPDATE and DELETE through
 * the table's name is recorded before, during and after the swap.
 */
export function swapStep(d: ConversionDesign, changeTriggers: readonly ChangeTriggerFacts[] = []): Step {
  const t = relationText(d, d.table);
  const p = relationText(d, d.names.parent);
  const sqls: Statement[] = [
    { sql: `LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE` },
    phaseUpdate(d, "swapped", ["prepared"]),
    ...identityToParent(d),
  ];
  for (const s of d.ownedSequences)
    sqls.push({ sql: `ALTER SEQUENCE ${s.sequence} OWNED BY ${p}.${quoteIdentifier(s.column)}` });
  sqls.push(changeTriggersGuard(d, d.table, changeTriggers));
  for (const tg of changeTriggers) sqls.push({ sql: `DROP TRIGGER ${quoteIdentifier(tg.name)} ON ${t}` });
  sqls.push(...swapIndexNames(d));
  sqls.push({ sql: `ALTER TABLE ${t} RENAME TO ${quoteIdentifier(d.names.history)}` });
  sqls.push({ sql: `ALTER TABLE ${p} RENAME TO ${quoteIdentifier(d.table)}` });
  sqls.push(...createChangeTriggers(d, d.table, changeTriggers));
  sqls.push({ sql: historyComment(d) });
  sqls.push({
    sql: `ALTER TABLE ${t} ATTACH PARTITION ${relationText(d, d.names.history)} FOR VALUES FROM (MINVALUE) TO (${boundText(d, d.boundary)})`,
  });
  return {
    id: "swap",
    title: `rename ${d.table} to ${d.names.history}, ${d.names.parent} to ${d.table}, and attach the old table as the partition FROM (MINVALUE) TO (${d.boundary})`,
    locks:
      "ACCESS EXCLUSIVE on the table for one short transaction (catalog changes only), under lock_timeout, retried",
    kind: "transaction",
    statements: sqls,
  };
}

/**
 * The parent's identity continues past the table's; then the table's identity goes. PostgreSQL
 * 17+ refuses to attach a table with an identity column; before 17 the parent's identity would
 * not be used for rows inserted through the parent. The parent owns it now.
 */
function identityToParent(d: ConversionDesign): Statement[] {
  if (!d.identity) return [];
  const table = inSchema(d, d.table);
  return [
    continueSequence(inSchema(d, d.names.parent), table, table, d.identity),
    {
      sql: `ALTER TABLE ${quoteRelation(table)} ALTER COLUMN ${quoteIdentifier(d.identity.column)} DROP IDENTITY`,
    },
  ];
}

/**
 * The old table's indexes take their history names, the parent's take the originals. A key that
 * changes columns is replaced on the old table by the prepared (key, time) index.
 */
function swapIndexNames(d: ConversionDesign): Statement[] {
  const t = relationText(d, d.table);
  const out: Statement[] = [];
  for (const i of d.parentIndexes) {
    if (i.replacesKey && d.primaryKey) {
      out.push({ sql: `ALTER TABLE ${t} DROP CONSTRAINT ${quoteIdentifier(d.primaryKey.name)}` });
      out.push({
        sql: `ALTER TABLE ${t} ADD CONSTRAINT ${quoteIdentifier(i.history)} PRIMARY KEY USING INDEX ${quoteIdentifier(d.names.newKeyIndex)}`,
      });
    } else {
      out.push({ sql: `ALTER INDEX ${relationText(d, i.original)} RENAME TO ${quoteIdentifier(i.history)}` });
    }
    out.push({ sql: `ALTER INDEX ${relationText(d, i.temporary)} RENAME TO ${quoteIdentifier(i.original)}` });
  }
  return out;
}

/** The historical partition says what it is; status and the runbooks recognise the prefix. */
function historyComment(d: ConversionDesign): string {
  const text = `${HISTORY_COMMENT_PREFIX} historical partition of ${displayRelation(inSchema(d, d.table))} (rows before ${d.boundary}); retention drops it whole once ${d.boundary} is past the cutoff`;
  return `COMMENT ON TABLE ${relationText(d, d.names.history)} IS ${quoteLiteral(text)}`;
}
