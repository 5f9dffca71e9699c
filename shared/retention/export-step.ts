// Mode "export" before the detach: the expired partition is written to the cold tier (or a valid
// export of it is found there), then read back and compared with the count and checksum of the
// rows the export read (each row hashed by PostgreSQL), and only a verified manifest lets the
// removal go on. A failure leaves the partition attached: the caller throws before the mark and
// the detach, so the action fails, logged as an ERROR (exit 1).
import {
  type ExportEvent,
  exportPartition,
  exportRootProblem,
  type PartitionToExport,
} from "../cold/export.ts";
import { type Manifest, readManifest } from "../cold/manifest.ts";
import { type VerifyProblem, verifyExport } from "../cold/verify.ts";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { Logger } from "../log/logger.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type ColdTier, coldTierOf } from "./cold-tier.ts";
import type { RetentionContext } from "./context.ts";
import {
  describesPartition,
  EXPORT_RUNBOOK,
  exportedContents,
  OTHER_EXPORT_ADVICE,
} from "./existing-export.ts";
import { exportDirectory, exportOf, exportTarget } from "./export-target.ts";
import type { RemovePartition } from "./remove.ts";

// The runbook section every export message points to; export-finish.ts takes it from here.
export { EXPORT_RUNBOOK };

/** An export read back and found equal to the database: what allows the detach and the drop. */
export interface VerifiedExport {
  readonly target: PartitionToExport;
  readonly dir: string;
  readonly manifest: Manifest;
  /** For the audit trail: "exported to ... and verified", or "... already there, verified". */
  readonly how: string;
}

/** Exports (unless a valid export exists and --re-export was not given) and verifies `action`. */
export async function exportBeforeDetach(
  ctx: RetentionContext,
  action: RemovePartition,
): Promise<VerifiedExport> {
  const tier = await coldTierOf(ctx.db);
  const { from, to, partition } = action;
  // The planner keeps MINVALUE-bounded partitions (export_unbounded) and gives the rest exportTo.
  if (from === null || action.exportTo === undefined)
    throw new Error(`${displayRelation(partition)} has no export directory: it cannot be exported`);
  const target = exportTarget(ctx.policy, partition, { from, to });
  const root = exportOf(ctx.policy)!.to;
  const left = "it stays attached; nothing of it is removed";
  if (!tier.reExport) {
    const io = { log: ctx.log, partition, dir: action.exportTo, root, left };
    const existing = await withIoContext(io, () => validExport(ctx, tier, action.exportTo!, target));
    if (existing) return existing;
  }
  return await exportAndVerify(ctx, tier, root, target, left);
}

/**
 * What is already in `dir`: a manifest for this very partition (same relation and bounds) whose
 * files read back equal to the manifest and to the partition now is reused (a partition restored
 * from the cold tier is not written again); a damaged or partial export (no or an invalid
 * manifest, files missing or altered) is replaced. An intact export of other rows (another
 * partition, other bounds, or rows the partition no longer holds) may be the only copy of a dropped
 * partition: the partition is refused, and only --re-export (which skips this) writes over it.
 */
async function validExport(
  ctx: RetentionContext,
  tier: ColdTier,
  dir: string,
  target: PartitionToExport,
): Promise<VerifiedExport | undefined> {
  const read = readManifest(dir);
  if (read.state === "missing") return undefined;
  const shown = displayRelation(target.partition);
  const same = read.state === "ok" && describesPartition(read.manifest, target);
  const verdict = await verifyExport(dir, same ? tier.pool : undefined);
  if (verdict.ok && same) {
    ctx.log.info(`${shown} is already exported to ${dir}: verified, files not rewritten`, {
      partition: shown,
      rows: verdict.manifest.rows,
    });
    return {
      target,
      dir,
      manifest: verdict.manifest,
      how: `already exported to ${dir} (${verdict.manifest.rows} rows), verified, not rewritten`,
    };
  }
  const intact = verdict.ok || verdict.problems.every((p) => p.code === "database");
  if (intact && verdict.manifest) throw otherExport(ctx.log, dir, verdict.manifest, target);
  ctx.log.warn(
    `the export in ${dir} is damaged or incomplete, it does not verify: exporting it again (${shown})`,
    {
      partition: shown,
      problems: summary(verdict.ok ? [] : verdict.problems),
    },
  );
  return undefined;
}

/** The ERROR refusing to write `target` over an intact export of other rows. */
function otherExport(log: Logger, dir: string, manifest: Manifest, target: PartitionToExport): Error {
  const shown = displayRelation(target.partition);
  const ours = `${shown} [${target.from.toISOString()}, ${target.to.toISOString()})`;
  const message = `${dir} holds an intact export of ${exportedContents(manifest)}, not of ${ours} as it is now: it may be the only copy of those rows, so ${ours} is not exported over it and stays attached. ${OTHER_EXPORT_ADVICE}`;
  log.error(message, {
    partition: shown,
    dir,
    exportedPartition: displayRelation(manifest.partition.relation),
  });
  return new Error(message);
}

/**
 * Writes `target`'s files and manifest under `root` (export.ts clears whatever an earlier export
 * left), then reads every file back and compares what it holds with the manifest. Throws, after an
 * ERROR record naming every problem, when they differ; `left` says what that leaves.
 *
 * The manifest's row count and checksum are of the rows the export's snapshot returned, each row
 * hashed by PostgreSQL, so the read-back compares the files with the partition as exported. The
 * table is not scanned again here: it is compared with the manifest after its detach
 * (confirmBeforeDrop, which exports it again if rows changed meanwhile) and once more under the
 * drop's lock (confirmUnderLock). A third scan now would prove nothing those two do not, and each
 * scan hashes every row of the partition.
 */
export async function exportAndVerify(
  ctx: RetentionContext,
  tier: ColdTier,
  root: string,
  target: PartitionToExport,
  left: string,
): Promise<VerifiedExport> {
  const dir = exportDirectory(root, target);
  const shown = displayRelation(target.partition);
  // Checked when the run started, and again here: a mount can go away during a run.
  const unusable = exportRootProblem(root);
  if (unusable) {
    const message = `retention.export.to: ${unusable}. ${shown} is not exported: ${left}. See ${EXPORT_RUNBOOK}.`;
    ctx.log.error(message, { partition: shown, dir });
    throw new Error(message);
  }
  ctx.log.info(`exporting ${shown} to ${dir}`, { partition: shown, dir });
  const io = { log: ctx.log, partition: target.partition, dir, root, left };
  await withIoContext(io, () =>
    exportPartition(tier.pool, target, {
      root,
      productVersion: tier.productVersion,
      onEvent: (event) => exportFaultPoint(event, ctx.log),
    }),
  );
  // The manifest is written, nothing is read back yet.
  await pauseAtFaultPoint("retention-export-before-verify", ctx.log);
  const verdict = await withIoContext(io, () => verifyExport(dir));
  if (!verdict.ok) throw verificationFailed(ctx.log, target.partition, dir, verdict.problems, left);
  const { rows, files } = verdict.manifest;
  return {
    target,
    dir,
    manifest: verdict.manifest,
    how: `exported to ${dir} (${rows} rows, ${files.length} files), read back and verified`,
  };
}

/**
 * Runs `work` (file reads and writes under `dir`); a file system error (ENOTDIR, EACCES, ENOSPC...)
 * becomes an ERROR that says which partition, where, what to check, and what it leaves.
 */
export async function withIoContext<T>(
  io: { log: Logger; partition: Relation; dir: string; root: string; left: string },
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Only the operating system's errors (they carry a syscall); anything else is rethrown as is.
    if (typeof code !== "string" || !("syscall" in (error as object))) throw error;
    const shown = displayRelation(io.partition);
    const message = `could not export ${shown} to ${io.dir}: ${(error as Error).message}. Check retention.export.to (${io.root}): the mount, its free space and this job's permissions on it. ${io.left}. See ${EXPORT_RUNBOOK}.`;
    io.log.error(message, { partition: shown, dir: io.dir, code });
    throw new Error(message, { cause: error });
  }
}

/** Logs the failed verification as an ERROR and returns the error that fails the action. */
export function verificationFailed(
  log: Logger,
  partition: Relation,
  dir: string,
  problems: readonly VerifyProblem[],
  left: string,
): Error {
  const shown = displayRelation(partition);
  const message = `the export of ${shown} in ${dir} failed verification (${summary(problems)}): ${left}. See ${EXPORT_RUNBOOK}.`;
  log.error(message, { partition: shown, dir, problems: problems.map((p) => ({ ...p })) });
  return new Error(message);
}

/** The problems in one line, for messages. */
export function summary(problems: readonly VerifyProblem[]): string {
  return problems.map((p) => `${p.code}${p.file ? ` ${p.file}` : ""}: ${p.detail}`).join("; ");
}

/** The export's own moments at which a test can kill the job. */
async function exportFaultPoint(event: ExportEvent, log: Logger): Promise<void> {
  // A row group is written; its part file is still being written unless it was the file's last.
  if (event.kind === "row_group") await pauseAtFaultPoint("retention-export-row-group", log);
  // Every part file is complete and synced; the manifest is not written yet.
  if (event.kind === "before_manifest") await pauseAtFaultPoint("retention-export-before-manifest", log);
}
