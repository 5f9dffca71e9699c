// How far rollup-hourly has rolled a target up for good: the frontier before which every hour is
// final, i.e. materialized in the rollup table from raw rows that were all there. Other jobs (raw
// retention) must not remove raw rows at or after it: those hours still have to be computed.
//
// The rule is the one the real-time read, public.telemetry_hourly_series, applies to decide which
// hours it may serve from the rollups:
// - only task layouts (shard_count) whose every task has saved a watermark row count: a task that
//   has not run yet has rolled up nothing for its groups, so while no layout is complete no hour is
//   final;
// - over those rows, the smallest final_before: hours before it are final in every shard;
// - a rebuild still pending in any of them ([backfill_next, backfill_to), backfill_next <
//   backfill_to) has not recomputed those hours yet: they are not final, so the frontier is at most
//   the smallest such backfill_next.
// (The read also serves from raw rows the final hours that hold rows newer than a saved snapshot:
// late rows. The next run rolls them up if their hour is within its raw-data horizon, now - keep of
// the source's retention, and never recomputes hours before it; retention only removes rows before
// its cutoff, now - keep, which are before that horizon already. So late rows do not move the
// frontier.)
import { type Kysely, sql } from "kysely";
import type { DB } from "../db/schema.ts";

/** One row of telemetry_jobs.rollup_watermarks: one task of one layout of one target. */
export interface WatermarkRow {
  readonly shardCount: number;
  readonly finalBefore: Date;
  readonly backfillNext: Date | null;
  readonly backfillTo: Date | null;
}

export interface RollupFrontier {
  /** The rollup target, as the policy names it (the key of its watermark rows). */
  readonly target: string;
  /** Every hour before this instant is final. null: no hour is final yet. */
  readonly frontier: Date | null;
  /** The smallest final_before over the complete layouts; null when there is none. */
  readonly finalBefore: Date | null;
  /** A rebuild not finished yet in some task of a complete layout: its hours are not final. */
  readonly pendingRebuild: { readonly from: Date; readonly to: Date } | null;
}

/** The frontier from the target's watermark rows (pure). */
export function rollupFrontier(target: string, rows: readonly WatermarkRow[]): RollupFrontier {
  const tasks = new Map<number, number>();
  for (const r of rows) tasks.set(r.shardCount, (tasks.get(r.shardCount) ?? 0) + 1);
  const complete = rows.filter((r) => tasks.get(r.shardCount) === r.shardCount);
  let finalBefore: Date | null = null;
  for (const r of complete)
    if (finalBefore === null || r.finalBefore < finalBefore) finalBefore = r.finalBefore;
  let rebuildFrom: Date | null = null;
  let rebuildTo: Date | null = null;
  for (const r of complete) {
    if (!r.backfillNext || !r.backfillTo || !(r.backfillNext < r.backfillTo)) continue;
    if (rebuildFrom === null || r.backfillNext < rebuildFrom) rebuildFrom = r.backfillNext;
    if (rebuildTo === null || r.backfillTo > rebuildTo) rebuildTo = r.backfillTo;
  }
  const pendingRebuild = rebuildFrom && rebuildTo ? { from: rebuildFrom, to: rebuildTo } : null;
  const frontier =
    finalBefore && pendingRebuild && pendingRebuild.from < finalBefore ? pendingRebuild.from : finalBefore;
  return { target, frontier, finalBefore, pendingRebuild };
}

/** Reads the target's watermark rows and returns its frontier. */
export async function readRollupFrontier(db: Kysely<DB>, target: string): Promise<RollupFrontier> {
  const r = await sql<{
    shard_count: number;
    final_before: Date;
    backfill_next: Date | null;
    backfill_to: Date | null;
  }>`
    SELECT shard_count, final_before, backfill_next, backfill_to
      FROM telemetry_jobs.rollup_watermarks
     WHERE target = ${target}`.execute(db);
  return rollupFrontier(
    target,
    r.rows.map((row) => ({
      shardCount: row.shard_count,
      finalBefore: row.final_before,
      backfillNext: row.backfill_next,
      backfillTo: row.backfill_to,
    })),
  );
}

/** How far the rollups are final, and why not further: one clause, for messages. */
export function describeRollupFrontier(f: RollupFrontier): string {
  if (f.frontier === null)
    return `rollup-hourly into ${f.target} has not made any hour final yet (it has not run, or not every task of its current task layout has)`;
  const rebuild =
    f.pendingRebuild && f.finalBefore && f.pendingRebuild.from < f.finalBefore
      ? ` (final_before is ${f.finalBefore.toISOString()}, but a rebuild of ${f.pendingRebuild.from.toISOString()} .. ${f.pendingRebuild.to.toISOString()} is still pending)`
      : "";
  return `rollup-hourly into ${f.target} has made hours final only before ${f.frontier.toISOString()}${rebuild}`;
}
