// Restores one exported partition from the cold tier (telemetry-jobs restore).
//
// Order, and what a kill at each point leaves:
// 1. locate the export and verify every file against its manifest (verify.ts), then check the
//    target: anything that refuses (exit 2) does so here, before anything is written;
// 2. (re)create the staging table (a leftover of a killed restore is replaced; an empty table the
//    partition library left under the partition's name is dropped) and stream the rows into it a
//    row group at a time. In attach mode it is built LIKE the parent, as the library builds a
//    partition-to-be, and logged: these rows become the partition's, written once. A kill leaves a
//    staging table and nothing else;
// 3. the staging table's digest, computed by PostgreSQL with the export's row hash, must equal the
//    manifest's; on a mismatch the staging table is dropped (exit 1);
// 4. attach mode: the partition library attaches the staging table in place (attach-filled.ts:
//    the bound CHECK and the parent's foreign keys added NOT VALID and validated, which holds up no
//    writer, then ATTACH under lock_timeout, retried, renaming it to the partition's name in that
//    transaction, with DEFAULT's rows of the range moved in, and in place of an empty partition of
//    the range if there is one).
//    A kill before that commit leaves the staging table, which the next restore replaces; readers
//    see the partition whole or not at all. --into mode: the staging table is renamed to the
//    partition's name in the given schema instead.
import type { Kysely } from "kysely";
import { EXIT, type ExitCode } from "../config/errors.ts";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { withAdvisoryLocks } from "../run/advisory-lock.ts";
import type { Manifest } from "./manifest.ts";
import { attachRestored, dropEmptyLeftover, holdAdvice, intoRestored } from "./restore-attach.ts";
import {
  createStaging,
  digestMismatch,
  dropStaging,
  loadStaging,
  type StagingShape,
  tableDigest,
} from "./restore-load.ts";
import { type Located, locateByName, locateByStart } from "./restore-locate.ts";
import { RestoreRefused } from "./restore-plan.ts";
import { type Prepared, prepareAttach, prepareInto } from "./restore-prepare.ts";
import { verifyExport } from "./verify.ts";

export interface RestoreRequest {
  policy: TablePolicy;
  root: string;
  select: { partition: string } | { from: Date };
  /** Restore into a plain table in this schema instead of attaching. */
  into?: string | undefined;
  dryRun: boolean;
  now: Date;
}

/** The jobs a restore keeps off the table while it runs, and itself. */
const LOCKED_JOBS = ["restore", "partition-manager", "retention"];

export async function runRestore(
  db: Kysely<DB>,
  request: RestoreRequest,
  log: Logger,
  signal: AbortSignal,
): Promise<ExitCode> {
  const table = policyTable(request.policy);
  const located = locate(request, table);
  if (!located.found) {
    log.error(`restore refused: ${located.reason}. Nothing was written`, { table: displayRelation(table) });
    return EXIT.usage;
  }
  const verdict = await verifyExport(located.dir);
  if (!verdict.ok) {
    const problems = verdict.problems.map((p) => `${p.code}${p.file ? ` (${p.file})` : ""}: ${p.detail}`);
    log.error(`restore stopped: the export in ${located.dir} does not verify. Nothing was written`, {
      dir: located.dir,
      problems,
    });
    return EXIT.failed;
  }
  const manifest = verdict.manifest;
  if (manifest.table.schema !== table.schema || manifest.table.name !== table.name) {
    log.error(`restore stopped: ${located.dir} holds an export of ${displayRelation(manifest.table)}`, {});
    return EXIT.failed;
  }
  const keys = LOCKED_JOBS.map((job) => `${job}:${table.schema}.${table.name}`);
  const locked = await withAdvisoryLocks(db, keys, (lost) =>
    restoreLocked(db, request, { dir: located.dir, manifest, table }, log, AbortSignal.any([signal, lost])),
  );
  if (locked.acquired) return locked.value;
  log.error(`restore not started: another job holds ${locked.busy}; run it again when that job is done`, {});
  return EXIT.failed;
}

function locate(request: RestoreRequest, table: Relation): Located {
  const { select, root, policy } = request;
  return "partition" in select
    ? locateByName(root, table, select.partition)
    : locateByStart(root, table, policy.timeColumn, select.from);
}

export interface Source {
  dir: string;
  manifest: Manifest;
  table: Relation;
}

async function restoreLocked(
  db: Kysely<DB>,
  request: RestoreRequest,
  source: Source,
  log: Logger,
  signal: AbortSignal,
): Promise<ExitCode> {
  let prepared: Prepared;
  try {
    prepared = request.into
      ? await prepareInto(db, source, request.into)
      : await prepareAttach(db, source, request.policy);
  } catch (error) {
    if (!(error instanceof RestoreRefused)) throw error;
    log.error(`restore refused: ${error.message}. Nothing was written`, {
      table: displayRelation(source.table),
    });
    return EXIT.usage;
  }
  const plan = request.dryRun ? `dry run, nothing written: ${prepared.plan}` : prepared.plan;
  log.notice(plan, { dir: source.dir, rows: Number(source.manifest.rows), dryRun: request.dryRun });
  if (request.dryRun) return EXIT.ok;
  if (prepared.decision?.dropLeftover) await dropEmptyLeftover(db, prepared.target);
  const loaded = await stage(db, source, prepared, log, signal);
  if (loaded !== EXIT.ok) return loaded;
  if (request.into) {
    await intoRestored(db, source, prepared);
    log.notice(
      `restored ${source.manifest.rows} rows into ${displayRelation(prepared.target)} for inspection`,
      {
        target: displayRelation(prepared.target),
      },
    );
    return EXIT.ok;
  }
  try {
    await attachRestored(db, request, source, prepared, log, signal);
  } catch (error) {
    // Not left behind for the next restore, which reloads it anyway.
    await dropStaging(db, prepared.staging).catch(() => {});
    throw error;
  }
  log.notice(holdAdvice(prepared.target, request.now, request.policy.retention), {
    partition: displayRelation(prepared.target),
  });
  return EXIT.ok;
}

/** Steps 2 and 3: the staging table, filled and checked; on any failure it is dropped. */
async function stage(
  db: Kysely<DB>,
  { dir, manifest, table }: Source,
  prepared: Prepared,
  log: Logger,
  signal: AbortSignal,
): Promise<ExitCode> {
  const { staging } = prepared;
  const shape: StagingShape = prepared.attach ? { like: table } : { columns: manifest.columns };
  await createStaging(
    db,
    staging,
    shape,
    `${displayRelation(table)} partition ${manifest.partition.relation.name}`,
  );
  try {
    await loadStaging(db, staging, dir, manifest, ({ rows, file }) => {
      log.info("restore: loaded a row group", { staging: displayRelation(staging), file, rows });
      if (signal.aborted) throw new Error("stopped by a signal while loading");
    });
    const mismatch = digestMismatch(await tableDigest(db, staging, manifest), manifest);
    if (mismatch === undefined) {
      log.info("restore: the loaded rows match the manifest", { staging: displayRelation(staging) });
      return EXIT.ok;
    }
    await dropStaging(db, staging);
    log.error(
      `restore stopped: the loaded rows differ from the manifest (${mismatch}). Nothing was attached`,
      {
        dir,
      },
    );
    return EXIT.failed;
  } catch (error) {
    await dropStaging(db, staging).catch(() => {});
    throw error;
  }
}
