// Before a detached table is dropped: when it was exported, it must still be what a verified export
// holds. Rows may have changed between the export and the detach (a late correction), so its columns
// and digest (row count and checksum, in one snapshot) are compared with the manifest; when they
// differ, the detached table (no longer written through the parent) is exported again and
// verified. A table a killed run left detached is checked in full: its files read back again and
// compared with it. Anything that fails leaves the table detached and marked, logged as an ERROR
// (exit 1); the next run tries again.
//
// Where the files are follows from the partition's lower bound, which a detached table no longer
// has: the mark step records the range and the export root on the table's time column (a comment,
// which the detach keeps and the drop removes). A killed run's leftover is recognised by it and
// checked against that export whatever the policy's mode is now: its removal mark says "mode drop",
// and a policy changed away from "export" must not drop it unchecked.
import { type Kysely, sql } from "kysely";
import type pg from "pg";
import type { Manifest } from "../cold/manifest.ts";
import { coldColumns } from "../cold/schema-map.ts";
import { beginSnapshot, clientOf, readPartitionColumns, readPartitionDigest } from "../cold/source.ts";
import { sameColumns, verifyExport } from "../cold/verify.ts";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { coldTierOf } from "./cold-tier.ts";
import type { RetentionContext } from "./context.ts";
import {
  EXPORT_RUNBOOK,
  exportAndVerify,
  summary,
  type VerifiedExport,
  withIoContext,
} from "./export-step.ts";
import { exportDirectory, exportOf, exportTarget } from "./export-target.ts";

const RANGE_MARK = /^telemetry-jobs retention: exporting \[(\S+), (\S+)\)(?: under (.+))?$/s;
const LEFT = "it stays detached and marked, and the next run tries again";

/** What the mark on a detached table's time column says: the range exported, and under which root. */
interface ExportMark {
  readonly from: Date;
  readonly to: Date;
  /** Absent in marks written before the root was recorded. */
  readonly root?: string | undefined;
}

/** The statement that records the range being exported, and where, on the partition's time column. */
export function exportRangeMark(
  timeColumn: string,
  partition: Relation,
  range: { from: Date; to: Date },
  root: string,
) {
  const text = `telemetry-jobs retention: exporting [${range.from.toISOString()}, ${range.to.toISOString()}) under ${root}`;
  return sql`COMMENT ON COLUMN ${relationSql(partition)}.${sql.id(timeColumn)} IS ${sql.lit(text)}`;
}

async function readRangeMark(
  db: Kysely<DB>,
  table: Relation,
  column: string,
): Promise<ExportMark | undefined> {
  const r = await sql<{ comment: string | null }>`
    SELECT col_description(a.attrelid, a.attnum) AS comment
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = ${relationOidSql(table)} AND a.attname = ${column} AND NOT a.attisdropped`.execute(
    db,
  );
  const m = RANGE_MARK.exec(r.rows[0]?.comment ?? "");
  return m ? { from: new Date(m[1]!), to: new Date(m[2]!), root: m[3] } : undefined;
}

/** A detached table found equal to its verified export: how, and the manifest it equals. */
export interface Confirmed {
  readonly how: string;
  readonly manifest: Manifest;
}

/**
 * Before `table` (detached) is dropped: the check described at the top. `exported` is this run's
 * verified export of it, if this run exported it. Returns what was done, for the audit trail, and
 * the manifest the drop must still find the table equal to (confirmUnderLock); undefined: the
 * table was never exported (not a mode "export" removal), nothing to check.
 */
export async function confirmBeforeDrop(
  ctx: RetentionContext,
  table: Relation,
  exported: VerifiedExport | undefined,
): Promise<Confirmed | undefined> {
  const shown = displayRelation(table);
  if (exported) {
    const tier = await coldTierOf(ctx.db);
    const changed = await changedSince(tier.pool, table, exported.manifest);
    if (changed === undefined)
      return { how: `${exported.how}; unchanged at the detach`, manifest: exported.manifest };
    ctx.log.warn(`${shown} changed between its export and its detach (${changed}): exporting it again`, {
      partition: shown,
    });
    const root = exportOf(ctx.policy)!.to;
    const again = await exportAndVerify(ctx, tier, root, exported.target, LEFT);
    return { how: `${again.how} after the detach (${changed})`, manifest: again.manifest };
  }
  const mark = await readRangeMark(ctx.db, table, ctx.policy.timeColumn);
  const root = mark?.root ?? (mark ? exportOf(ctx.policy)?.to : undefined);
  if (!mark || root === undefined) {
    if (!mark && !exportOf(ctx.policy)) return undefined;
    const why = mark
      ? "its export mark names no export root (written by an earlier version) and the policy no longer exports"
      : "it carries no record of an export (detached by a run in another mode?)";
    const message = `${shown} is detached and marked for removal, but ${why}: it is not dropped. Drop it by hand once you hold a copy of its rows.`;
    ctx.log.error(message, { partition: shown });
    throw new Error(message);
  }
  const tier = await coldTierOf(ctx.db);
  const target = exportTarget(ctx.policy, table, mark);
  const dir = exportDirectory(root, target);
  const io = { log: ctx.log, partition: table, dir, root, left: LEFT };
  const verdict = await withIoContext(io, () => verifyExport(dir, tier.pool));
  if (verdict.ok)
    return {
      how: `export in ${dir} (${verdict.manifest.rows} rows) read back and verified`,
      manifest: verdict.manifest,
    };
  ctx.log.warn(`the export of ${shown} in ${dir} does not verify: exporting the detached table again`, {
    partition: shown,
    problems: summary(verdict.problems),
  });
  const again = await exportAndVerify(ctx, tier, root, target, LEFT);
  return { how: again.how, manifest: again.manifest };
}

/**
 * How `table` differs from what `manifest` describes, in a snapshot of its own; see differsFrom.
 * The check after the detach (bench/cold-export.ts times it too).
 */
export async function changedSince(
  pool: pg.Pool,
  table: Relation,
  manifest: Manifest,
): Promise<string | undefined> {
  const client = await pool.connect();
  try {
    await beginSnapshot(client);
    const changed = await differsFrom(client, table, manifest);
    await client.query("COMMIT");
    return changed;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** How `table` differs from what `manifest` describes (columns, rows, checksum); undefined: it does not. */
async function differsFrom(
  client: pg.ClientBase,
  table: Relation,
  manifest: Manifest,
): Promise<string | undefined> {
  const columns = coldColumns(await readPartitionColumns(client, table));
  if (!sameColumns(columns, manifest.columns)) return "its columns changed";
  const digest = await readPartitionDigest(client, table, columns, manifest.time.column);
  if (digest.rows.toString() === manifest.rows && digest.checksum === manifest.checksum.value)
    return undefined;
  return `${digest.rows} rows now, ${manifest.rows} exported`;
}

/**
 * In the drop's transaction, just before the DROP: the table locked (ACCESS EXCLUSIVE, under the
 * transaction's lock_timeout), then compared with its export on the same connection. A writer
 * that addresses the detached table by name may have committed rows after the check before the
 * drop (it held the lock the drop waited for); under the lock nothing can change any more, so what
 * is dropped is exactly what the export holds. A difference fails the drop (ERROR): the table stays
 * detached and marked, and the next run exports it again.
 */
export async function confirmUnderLock(
  ctx: RetentionContext,
  trx: Kysely<DB>,
  table: Relation,
  manifest: Manifest,
): Promise<void> {
  await sql`LOCK TABLE ${relationSql(table)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
  const changed = await differsFrom(clientOf(trx), table, manifest);
  if (changed === undefined) return;
  const shown = displayRelation(table);
  const message = `${shown} changed while its drop waited for it (${changed}): it is not dropped; ${LEFT}, exporting it anew. Rows are still written into it by name: find that writer. See ${EXPORT_RUNBOOK}.`;
  ctx.log.error(message, { partition: shown });
  throw new Error(message);
}
