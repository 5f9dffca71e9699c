// What the planner hands the executor (apply.ts): steps, each a list of SQL statements with what it
// locks. Statements are text, not query builders, because --dry-run prints them and the tests
// compare them; every identifier in them is quoted on its own (shared/db/quote.ts), every relation
// rendered from its parts. This module also holds the small pieces several step builders share.
import { quoteLiteral, quoteRelation } from "../db/quote.ts";
import type { Relation } from "../db/relation.ts";
import { boundLiteral } from "../partitions/bounds.ts";
import type { ConversionDesign } from "./design.ts";

export type StepKind = "transaction" | "concurrently";

export interface Statement {
  sql: string;
  /** The statement must affect exactly this many rows, or the step rolls back (state guards). */
  expectRows?: number;
  /** What a guard's failure means, for the error message. */
  guard?: string;
}

export interface Step {
  id: string;
  title: string;
  /** What it locks, and for how long, in words (printed with --dry-run and in the runbook). */
  locks: string;
  kind: StepKind;
  statements: Statement[];
  /** Long steps report progress while they run. */
  progress?: { kind: "index"; index: string } | { kind: "validate" };
}

/** The phases recorded in telemetry_jobs.conversions. */
export type ConversionPhase = "preparing" | "prepared" | "swapped" | "reverted" | "finalized";

/** A relation in the table's schema: the table, the parent, a partition, an index. */
export function inSchema(d: ConversionDesign, name: string): Relation {
  return { schema: d.schema, name };
}

/** `"schema"."name"` of a relation in the table's schema. */
export function relationText(d: ConversionDesign, name: string): string {
  return quoteRelation(inSchema(d, name));
}

/** A range bound (an ISO instant) as a literal of the partition key's type. */
export function boundText(d: ConversionDesign, iso: string): string {
  return quoteLiteral(boundLiteral(new Date(iso), d.keyType));
}

/**
 * The table as `schema.name` text: its conversion's key in telemetry_jobs.conversions.table_name
 * and in convert's advisory lock keys. Policy tables are plain lower-case identifiers, so the text
 * is unambiguous; it is only ever compared whole, never split.
 */
export function tableKey(table: Relation): string {
  return `${table.schema}.${table.name}`;
}

/**
 * Moves the recorded phase. It must change exactly one row, or the step rolls back: the guard
 * against running a phase from the wrong state, or twice at once (the row lock serialises them).
 */
export function phaseUpdate(
  d: ConversionDesign,
  to: ConversionPhase,
  from: readonly ConversionPhase[],
): Statement {
  const [only, ...more] = from;
  const where =
    only !== undefined && more.length === 0
      ? `= ${quoteLiteral(only)}`
      : `IN (${from.map(quoteLiteral).join(", ")})`;
  const key = quoteLiteral(tableKey(inSchema(d, d.table)));
  return {
    sql: `UPDATE telemetry_jobs.conversions SET phase = ${quoteLiteral(to)}, updated_at = now() WHERE table_name = ${key} AND phase ${where}`,
    expectRows: 1,
  };
}

/** A step that only moves the recorded phase. */
export function markPhaseStep(
  d: ConversionDesign,
  id: string,
  title: string,
  to: ConversionPhase,
  from: readonly ConversionPhase[],
): Step {
  return {
    id,
    title,
    locks: "none on the table",
    kind: "transaction",
    statements: [phaseUpdate(d, to, from)],
  };
}
