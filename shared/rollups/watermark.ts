// The saved state of rollup-hourly, telemetry_jobs.rollup_watermarks: one row per task of a task
// layout (shard_count) of a target, keyed by the policy's rollup.target text. A row says which
// snapshot's rows are rolled up, before which hour every hour is final, and which rebuild is pending.
import { type Kysely, type RawBuilder, sql } from "kysely";
import type { DB } from "../db/schema.ts";
import type { ShardSpec, Watermark } from "./plan.ts";

export interface SavedWatermark extends Watermark {
  /** pg_snapshot text "xmin:xmax:xip,...": rows committed in it are rolled up. */
  seen: string;
}

export function parseSnapshot(text: string): { xmin: string; xmax: string; xip: string[] } {
  const [xmin, xmax, xip] = text.split(":");
  if (xmin === undefined || xmax === undefined || xip === undefined)
    throw new Error(`bad pg_snapshot "${text}"`);
  return { xmin, xmax, xip: xip === "" ? [] : xip.split(",") };
}

export async function loadWatermark(
  db: Kysely<DB>,
  target: string,
  shard: ShardSpec,
): Promise<SavedWatermark | undefined> {
  const r = await sql<{
    seen: string;
    final_before: Date;
    backfill_next: Date | null;
    backfill_to: Date | null;
  }>`
    SELECT seen::text AS seen, final_before, backfill_next, backfill_to
      FROM telemetry_jobs.rollup_watermarks
     WHERE target = ${target} AND shard_count = ${shard.count} AND shard_index = ${shard.index}`.execute(db);
  const row = r.rows[0];
  if (!row) return undefined;
  return {
    seen: row.seen,
    finalBefore: row.final_before,
    backfillNext: row.backfill_next,
    backfillTo: row.backfill_to,
  };
}

/**
 * A shard layout seen for the first time (CLOUD_RUN_TASK_COUNT changed) starts from what an earlier,
 * complete layout (every one of its tasks has saved state) had certainly processed: the oldest xmin
 * among its snapshots, as an empty snapshot (everything from there on counts as new: more work
 * once, never a lost row), its oldest finalBefore, and any rebuild it still had pending.
 * Undefined when there is no complete layout: the task starts like a first run.
 */
export async function inheritedStart(
  db: Kysely<DB>,
  target: string,
  shard: ShardSpec,
): Promise<SavedWatermark | undefined> {
  // (min() over xid8 exists only from PostgreSQL 16; ORDER BY works everywhere.)
  const r = await sql<{
    xmin: string | null;
    final_before: Date | null;
    backfill_next: Date | null;
    backfill_to: Date | null;
  }>`
    WITH complete AS (
      SELECT w.* FROM telemetry_jobs.rollup_watermarks w
       WHERE w.target = ${target} AND w.shard_count <> ${shard.count}
         AND (SELECT count(*) FROM telemetry_jobs.rollup_watermarks o
               WHERE o.target = w.target AND o.shard_count = w.shard_count) = w.shard_count)
    SELECT (SELECT pg_snapshot_xmin(seen) FROM complete ORDER BY 1 LIMIT 1)::text AS xmin,
           (SELECT min(final_before) FROM complete) AS final_before,
           (SELECT min(backfill_next) FROM complete WHERE backfill_next < backfill_to) AS backfill_next,
           (SELECT max(backfill_to) FROM complete WHERE backfill_next < backfill_to) AS backfill_to`.execute(
    db,
  );
  const row = r.rows[0];
  if (!row?.xmin || !row.final_before) return undefined;
  return {
    seen: `${row.xmin}:${row.xmin}:`,
    finalBefore: row.final_before,
    backfillNext: row.backfill_next,
    backfillTo: row.backfill_to,
  };
}

export async function saveWatermark(
  trx: Kysely<DB>,
  target: string,
  shard: ShardSpec,
  w: {
    seen: RawBuilder<unknown> | string;
    finalBefore: Date;
    backfillNext: Date | null;
    backfillTo: Date | null;
  },
): Promise<void> {
  const seen = typeof w.seen === "string" ? sql`${w.seen}::pg_snapshot` : w.seen;
  await sql`
    INSERT INTO telemetry_jobs.rollup_watermarks AS w
           (target, shard_count, shard_index, seen, final_before, backfill_next, backfill_to, updated_at)
    VALUES (${target}, ${shard.count}, ${shard.index}, ${seen}, ${w.finalBefore}, ${w.backfillNext}, ${w.backfillTo}, now())
    ON CONFLICT (target, shard_count, shard_index) DO UPDATE
       SET seen = excluded.seen, final_before = excluded.final_before, backfill_next = excluded.backfill_next,
           backfill_to = excluded.backfill_to, updated_at = excluded.updated_at`.execute(trx);
}

/** Once every task of the current layout has saved its state, older layouts' rows are obsolete. */
export async function dropObsoleteLayouts(db: Kysely<DB>, target: string, shard: ShardSpec): Promise<number> {
  const r = await sql`
    DELETE FROM telemetry_jobs.rollup_watermarks
     WHERE target = ${target} AND shard_count <> ${shard.count}
       AND (SELECT count(*) FROM telemetry_jobs.rollup_watermarks
             WHERE target = ${target} AND shard_count = ${shard.count}) = ${shard.count}`.execute(db);
  return Number(r.numAffectedRows ?? 0n);
}

/** The watermark of a task that has saved one; throws when it is not there. */
export async function loadSavedWatermark(
  db: Kysely<DB>,
  target: string,
  shard: ShardSpec,
): Promise<SavedWatermark> {
  const w = await loadWatermark(db, target, shard);
  if (!w) throw new Error(`no rollup watermark for ${target}, shard ${shard.index + 1}/${shard.count}`);
  return w;
}
