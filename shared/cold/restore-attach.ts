// Step 4 of a restore: the verified staging table becomes the partition in place, through the
// partition library (bound CHECK added NOT VALID and validated, then the library's attach under
// lock_timeout, which renames it to the partition's name), or the table for inspection (--into).
import { type Kysely, sql } from "kysely";
import type { RetentionPolicy } from "../config/policy.ts";
import { displayRelation, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { attachFilledTable } from "../partitions/attach-filled.ts";
import { readCatalog } from "../partitions/catalog.ts";
import type { RestoreRequest, Source } from "./restore.ts";
import type { Prepared } from "./restore-prepare.ts";

const RESTORED_COMMENT = "telemetry-jobs restore";

function restoredNote({ manifest, table, dir }: Source, { from, to }: Prepared, purpose: string): string {
  return `${RESTORED_COMMENT}: ${displayRelation(table)} partition ${manifest.partition.relation.name} [${from.toISOString()}, ${to.toISOString()}) from ${dir}${purpose}`;
}

/** Attaches the loaded and verified staging table as the partition, through the partition library. */
export async function attachRestored(
  db: Kysely<DB>,
  request: RestoreRequest,
  source: Source,
  prepared: Prepared,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  const { policy, now } = request;
  const { target, staging, from, to } = prepared;
  const lock = { lockTimeoutMs: policy.lockTimeoutMs, budgetMs: policy.retryBudgetMs };
  // Read again after the load, which can take minutes: the attach works from the table as it is now.
  const catalog = await readCatalog(db, source.table, policy.timeColumn, policy.interval, lock);
  const outcome = await attachFilledTable(
    { db, policy, catalog, log, now, signal },
    {
      table: staging,
      partition: target.name,
      from,
      to,
      comment: restoredNote(source, prepared, ""),
      replaceEmpty: prepared.decision?.replaceEmpty === true,
    },
  );
  log.info("restore: partition attached", {
    partition: displayRelation(target),
    rows: Number(source.manifest.rows),
    rowsFromDefault: outcome.rows,
    lockRetries: outcome.lockRetries,
  });
}

/** Drops the library's empty standalone leftover under the target's name, if it still is one. */
export async function dropEmptyLeftover(db: Kysely<DB>, target: Relation): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`LOCK TABLE ${relationSql(target)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
    // Not FROM ONLY: rows in partitions or inheritance children of it would go with the DROP.
    const r = await sql<{ has: boolean }>`
      SELECT EXISTS (SELECT 1 FROM ${relationSql(target)}) AS has`.execute(trx);
    if (r.rows[0]?.has) throw new Error(`${displayRelation(target)} now holds rows; nothing was dropped`);
    await sql`DROP TABLE ${relationSql(target)}`.execute(trx);
  });
}

/** --into: the staging table becomes the table for inspection, under the partition's name. */
export async function intoRestored(db: Kysely<DB>, source: Source, prepared: Prepared) {
  const { target, staging } = prepared;
  const note = restoredNote(source, prepared, ", for inspection");
  await db.transaction().execute(async (trx) => {
    await sql`ALTER TABLE ${relationSql(staging)} RENAME TO ${sql.id(target.name)}`.execute(trx);
    await sql`COMMENT ON TABLE ${relationSql(target)} IS ${sql.lit(note)}`.execute(trx);
  });
}

/** A word for a POSIX shell, single-quoted. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_.@%+=:,/-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/**
 * The notice after an attach. The restored partition is past its retention cutoff: the next
 * retention run removes it again unless it is held (mode export drops it after checking it against
 * its export, which is still in place, so it is not written again).
 */
export function holdAdvice(target: Relation, now: Date, retention: RetentionPolicy | undefined): string {
  if (retention === undefined) return `restored ${displayRelation(target)}`;
  const until = new Date(now.getTime() + 30 * 24 * 3600 * 1000).toISOString().slice(0, 10);
  const command = [
    "telemetry-jobs hold",
    shellWord(displayRelation(target)),
    `--until ${until}`,
    `--reason ${shellWord("restored from the cold tier")}`,
  ].join(" ");
  const how =
    retention.mode === "export"
      ? "removes it again (without exporting it again: its export is in place)"
      : `removes it again (mode ${retention.mode})`;
  return `restored ${displayRelation(target)}. It is past its retention cutoff: the next retention run ${how} unless it is held, e.g. ${command}`;
}
