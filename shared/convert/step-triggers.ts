// Statements that move rollup-hourly's change triggers between the plain table and the partitioned
// one (swap and revert), and the guard that they are still the ones read before the step's lock.
import { quoteIdentifier, quoteLiteral, quoteRelation, relationOidText } from "../db/quote.ts";
import { displayRelation } from "../db/relation.ts";
import { CHANGE_FUNCTION, CHANGE_TRIGGERS, changeTriggerStatement } from "../rollups/changes.ts";
import type { ConversionDesign } from "./design.ts";
import type { ChangeTriggerFacts } from "./facts.ts";
import { inSchema, type Statement } from "./step.ts";

const TRIGGER_STATE = { O: null, D: "DISABLE", R: "ENABLE REPLICA", A: "ENABLE ALWAYS" } as const;

/**
 * rollup-hourly's change triggers as found on the table, created on the relation `name` with the
 * same definition (rollup-hourly's own statement, shared/rollups/changes.ts) and the same
 * arguments, and left disabled (or replica-only) as they were.
 */
export function createChangeTriggers(
  d: ConversionDesign,
  name: string,
  triggers: readonly ChangeTriggerFacts[],
): Statement[] {
  const out: Statement[] = [];
  for (const found of triggers) {
    const trigger = CHANGE_TRIGGERS.find((c) => c.name === found.name);
    if (!trigger) continue;
    out.push({ sql: changeTriggerStatement(inSchema(d, name), trigger, found.args) });
    const state = TRIGGER_STATE[found.enabled];
    if (state)
      out.push({
        sql: `ALTER TABLE ${quoteRelation(inSchema(d, name))} ${state} TRIGGER ${quoteIdentifier(found.name)}`,
      });
  }
  return out;
}

/** tgargs as pg_trigger stores them (each argument followed by a NUL byte), hex-encoded. */
function argsHex(args: readonly string[]): string {
  return Buffer.concat(args.flatMap((a) => [Buffer.from(a, "utf8"), Buffer.from([0])])).toString("hex");
}

/**
 * Guard: rollup-hourly's change triggers on the relation `name` are still exactly `triggers` (names,
 * enabled state, arguments; the function is theirs). They were read before the step's lock; run
 * after it, this sees the catalog the step changes. rollup-hourly may have installed them in
 * between: the step then rolls back, and the same command again reads them anew.
 *
 * The relation is found by its oid, looked up from its schema and name (relationOidText). The
 * function goes in as a text literal read by to_regprocedure, which takes its argument list too:
 * the literal holds the quoted parts, which PostgreSQL reads back as exactly that function.
 */
export function changeTriggersGuard(
  d: ConversionDesign,
  name: string,
  triggers: readonly ChangeTriggerFacts[],
): Statement {
  const expected = [...triggers]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((t) => `${t.name}/${t.enabled}/t/${argsHex(t.args)}`)
    .join(" ");
  const fn = quoteLiteral(`${quoteRelation(CHANGE_FUNCTION)}()`);
  const names = CHANGE_TRIGGERS.map((c) => quoteLiteral(c.name)).join(", ");
  return {
    sql: `SELECT 1 WHERE (SELECT coalesce(string_agg(t.tgname::text || '/' || t.tgenabled::text || '/' || CASE WHEN t.tgfoid = to_regprocedure(${fn}) THEN 't' ELSE 'f' END || '/' || encode(t.tgargs, 'hex'), ' ' ORDER BY t.tgname::text COLLATE "C"), '') FROM pg_catalog.pg_trigger t WHERE t.tgrelid = ${relationOidText(inSchema(d, name))} AND t.tgname IN (${names})) = ${quoteLiteral(expected)}`,
    expectRows: 1,
    guard: `rollup-hourly's change triggers on ${displayRelation(inSchema(d, name))} changed since they were read (expected: ${triggers.map((t) => t.name).join(", ") || "none"}); run the same command again`,
  };
}
