// How many rows of a row-delete target are older than the cutoff, and how many of those must stay
// because their hours are not rolled up for good yet: counted exactly, or estimated.
//
// A dry run counts: it deletes nothing, and the operator reading it wants the figure. A run counts
// only up to EXACT_BELOW rows and takes the planner's estimate above that: counting millions means
// reading every expired row once more before the deletes read them again, a third of a
// time-ordered pass's reads and most of its cost beyond one plain DELETE. Whether there is anything
// to delete is always known for certain (a count that stops at EXACT_BELOW rows reads at least the
// first row there is); only a large figure in the plan comes from the statistics, and the audit row
// reports the rows deleted. A pass by block range, which ends early at the count, counts for itself.
import { type Kysely, type RawBuilder, sql } from "kysely";
import { columnSql, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";

export type RowCounting = "exact" | "estimate";

export interface ExpiredRows {
  /** Rows older than the cutoff. */
  readonly expired: number;
  /** Of those, rows at or after the row-delete limit, which stay. */
  readonly notFinal: number;
  /** Whether the two figures are the planner's estimates. */
  readonly estimated: boolean;
}

/**
 * `limit`: the row-delete limit of a rolled-up table, rows at or after it stay; undefined, no such
 * limit (none stay); null, every expired row stays.
 */
export async function readExpiredRows(
  db: Kysely<DB>,
  relation: Relation,
  at: { column: string; cutoff: Date; limit: Date | null | undefined; counting: RowCounting },
): Promise<ExpiredRows> {
  return at.counting === "exact"
    ? await countExpiredRows(db, relation, at)
    : await estimateExpiredRows(db, relation, at);
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
    estimated: false,
  };
}

/** Up to this many rows a run counts exactly; above it, it takes the planner's estimate. */
export const EXACT_BELOW = 10_000;

/**
 * The two ranges of expired rows, deletable (before the limit) and not final (from the limit to the
 * cutoff), each counted up to EXACT_BELOW rows (at most that many rows read) and estimated beyond.
 */
async function estimateExpiredRows(
  db: Kysely<DB>,
  relation: Relation,
  at: { column: string; cutoff: Date; limit: Date | null | undefined },
): Promise<ExpiredRows> {
  const rel = relationSql(relation);
  const col = columnSql(at.column);
  const { cutoff, limit } = at;
  const ranges = {
    deletable: limit === null ? undefined : sql`${col} < ${limit ?? cutoff}`,
    notFinal:
      limit === undefined
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
    const plan = await sql<{ "QUERY PLAN": { Plan: { "Plan Rows": number } }[] }>`
      EXPLAIN (FORMAT JSON) SELECT FROM ONLY ${rel} WHERE ${where}`.execute(db);
    const estimate = Math.round(plan.rows[0]?.["QUERY PLAN"][0]?.Plan["Plan Rows"] ?? 0);
    return { rows: Math.max(EXACT_BELOW, estimate), estimated: true };
  };
  const deletable = await planned(ranges.deletable, Number(r.rows[0]?.deletable ?? 0));
  const notFinal = await planned(ranges.notFinal, Number(r.rows[0]?.not_final ?? 0));
  return {
    expired: deletable.rows + notFinal.rows,
    notFinal: notFinal.rows,
    estimated: deletable.estimated || notFinal.estimated,
  };
}
