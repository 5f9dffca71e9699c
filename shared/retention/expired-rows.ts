// How many rows of a row-delete target are older than the cutoff, and how many of those must stay
// because their hours are not rolled up for good yet: counted exactly, or estimated.
//
// A dry run counts: it deletes nothing, and the operator reading it wants the figure. So does a run
// on a relation without an index that leads with the time column: its delete pass goes by block
// range and ends early once it has deleted the counted rows (delete-rows.ts). A run on a relation
// with one deletes in time order, which needs no count: it counts only up to EXACT_BELOW rows and
// takes the planner's estimate above that, since counting millions means reading every expired row
// once more before the deletes read them again (a third of the pass's reads, and most of its cost
// beyond one plain DELETE). Whether there is anything to delete is always known for certain (a
// count that stops at EXACT_BELOW finds the first row there is); only a large figure in the plan
// comes from the statistics, and the audit row reports the rows deleted.
import { type Kysely, type RawBuilder, sql } from "kysely";
import { columnSql, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { timeOrderIndex } from "./delete-in-time-order.ts";

export type RowCounting = "exact" | "estimate";

export interface ExpiredRows {
  /** Rows older than the cutoff. */
  readonly expired: number;
  /** Of those, rows at or after the row-delete limit, which stay. */
  readonly notFinal: number;
  /** Which figures are the planner's estimates. */
  readonly estimated: RowEstimates;
}

export interface RowEstimates {
  /** The rows to delete (expired - notFinal). */
  readonly deletable: boolean;
  readonly notFinal: boolean;
}

/** Up to this many rows a run counts exactly; above it, it takes the planner's estimate. */
export const EXACT_BELOW = 10_000;

/**
 * `limit`: the row-delete limit of a rolled-up table, rows at or after it stay; undefined, no such
 * limit (none stay); null, every expired row stays. `counting` "estimate": estimated where the
 * relation has an index that leads with the time column (see the top of this file).
 */
export async function readExpiredRows(
  db: Kysely<DB>,
  relation: Relation,
  at: { column: string; cutoff: Date; limit: Date | null | undefined; counting: RowCounting },
): Promise<ExpiredRows> {
  if (at.counting === "estimate" && (await timeOrderIndex(db, relation, at.column)))
    return await estimateExpiredRows(db, relation, at);
  return await countExpiredRows(db, relation, at);
}

async function countExpiredRows(
  db: Kysely<DB>,
  relation: Relation,
  at: { column: string; cutoff: Date; limit: Date | null | undefined },
): Promise<ExpiredRows> {
  const col = columnSql(at.column);
  const notFinal =
    at.limit === undefined
      ? sql`0`
      : at.limit === null
        ? sql`count(*)`
        : sql`count(*) FILTER (WHERE ${col} >= ${at.limit})`;
  const r = await sql<{ n: string; not_final: string }>`
    SELECT count(*) AS n, ${notFinal} AS not_final
      FROM ONLY ${relationSql(relation)} WHERE ${col} < ${at.cutoff}`.execute(db);
  return {
    expired: Number(r.rows[0]?.n ?? 0),
    notFinal: Number(r.rows[0]?.not_final ?? 0),
    estimated: { deletable: false, notFinal: false },
  };
}

/**
 * The two ranges of expired rows, deletable (before the limit) and not final (from the limit to the
 * cutoff), each counted up to EXACT_BELOW rows (a LIMITed count, which the planner normally reads
 * from the time index) and estimated beyond.
 */
async function estimateExpiredRows(
  db: Kysely<DB>,
  relation: Relation,
  at: { column: string; cutoff: Date; limit: Date | null | undefined },
): Promise<ExpiredRows> {
  const rel = relationSql(relation);
  const col = columnSql(at.column);
  const { cutoff, limit } = at;
  // A limit at the cutoff (the rollup has caught up) leaves nothing not final: no range to read.
  const ranges = {
    deletable: limit === null ? undefined : sql`${col} < ${limit ?? cutoff}`,
    notFinal:
      limit === undefined || limit?.getTime() === cutoff.getTime()
        ? undefined
        : limit === null
          ? sql`${col} < ${cutoff}`
          : sql`${col} >= ${limit} AND ${col} < ${cutoff}`,
  };
  const capped = (where: RawBuilder<unknown> | undefined) =>
    where
      ? sql`(SELECT count(*) FROM (SELECT FROM ONLY ${rel} WHERE ${where} LIMIT ${sql.lit(EXACT_BELOW)}) r)`
      : sql`0`;
  const r = await sql<{ deletable: string; not_final: string }>`
    SELECT ${capped(ranges.deletable)} AS deletable, ${capped(ranges.notFinal)} AS not_final`.execute(db);
  const planned = async (where: RawBuilder<unknown> | undefined, counted: number) => {
    if (!where || counted < EXACT_BELOW) return { rows: counted, estimated: false };
    const plan = await sql<{ "QUERY PLAN": unknown }>`
      EXPLAIN (FORMAT JSON) SELECT FROM ONLY ${rel} WHERE ${where}`.execute(db);
    const estimate = Math.round(planRows(plan.rows[0]?.["QUERY PLAN"]));
    return { rows: Math.max(EXACT_BELOW, estimate), estimated: true };
  };
  const deletable = await planned(ranges.deletable, Number(r.rows[0]?.deletable ?? 0));
  const notFinal = await planned(ranges.notFinal, Number(r.rows[0]?.not_final ?? 0));
  return {
    expired: deletable.rows + notFinal.rows,
    notFinal: notFinal.rows,
    estimated: { deletable: deletable.estimated, notFinal: notFinal.estimated },
  };
}

/** The top plan node's row estimate from EXPLAIN (FORMAT JSON): the parsed json, or its text. */
function planRows(document: unknown): number {
  const parsed = typeof document === "string" ? JSON.parse(document) : document;
  const rows = Array.isArray(parsed) ? parsed[0]?.Plan?.["Plan Rows"] : undefined;
  if (typeof rows !== "number")
    throw new Error(`EXPLAIN (FORMAT JSON) gave no "Plan Rows": ${JSON.stringify(parsed)}`);
  return rows;
}
