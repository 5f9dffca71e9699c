// `migrate convert`: reads the facts and the conversion's state, asks the planner for the phase's
// steps and runs them. Every phase is idempotent: it works out from the catalog and
// telemetry_jobs.conversions what is already done, so the same command after a kill finishes
// the job. While it works it holds partition-manager's and retention's advisory locks on the table,
// so neither touches the table while it changes shape.
import { type Kysely, sql } from "kysely";
import { ConfigError } from "../config/errors.ts";
import { parseQualifiedName } from "../config/identifiers.ts";
import type { TablePolicy } from "../config/policy.ts";
import { displayRelation, relationOidSql, relationSql } from "../db/relation.ts";
import type { Logger } from "../log/logger.ts";
import { withAdvisoryLocks } from "../run/advisory-lock.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type ExecContext, runStep } from "./apply.ts";
import { type Assessment, assess } from "./assess.ts";
import { boundaryProblem, defaultBoundary } from "./boundary.ts";
import { type ConversionDesign, type ConvertInput, design, INGEST_COLUMN, namesToCreate } from "./design.ts";
import {
  type ConversionState,
  existingRelations,
  readChangeTriggers,
  readConversionState,
  readTableFacts,
  type TableFacts,
} from "./facts.ts";
import { convertNames } from "./names.ts";
import type { Step } from "./step.ts";
import { abandonSteps } from "./step-abandon.ts";
import { finalizeSteps } from "./step-finalize.ts";
import { type PrepareState, prepareSteps } from "./step-prepare.ts";
import { recordStep } from "./step-record.ts";
import { revertStep } from "./step-revert.ts";
import { swapStep } from "./step-swap.ts";
import { verifyConversion } from "./verify.ts";

export const CONVERT_PHASES = [
  "preflight",
  "prepare",
  "swap",
  "verify",
  "revert",
  "finalize",
  "status",
] as const;
export type ConvertPhase = (typeof CONVERT_PHASES)[number] | "all";

export interface ConvertOptions {
  phase: ConvertPhase;
  policy: TablePolicy;
  now: Date;
  boundary?: Date | undefined;
  dropUnique: readonly string[];
  dryRun: boolean;
  lockTimeoutMs: number;
  retryBudgetMs: number;
  progressEveryMs: number;
}

export interface ConvertResult {
  exitCode: 0 | 1 | 2;
  /** The phases that ran, in order, with what each did. */
  phases: { phase: string; outcome: "done" | "already-done" | "refused" | "failed"; detail?: unknown }[];
}

class Refusal extends Error {
  override readonly name = "Refusal";
}

export async function runConvert(
  db: Kysely<any>,
  log: Logger,
  options: ConvertOptions,
  signal: AbortSignal = new AbortController().signal,
): Promise<ConvertResult> {
  const table = parseQualifiedName(options.policy.table)!;
  const ready = await sql<{
    ok: boolean;
  }>`SELECT to_regclass('telemetry_jobs.conversions') IS NOT NULL AS ok`.execute(db);
  if (!ready.rows[0]?.ok)
    throw new ConfigError("telemetry_jobs.conversions is missing: run `telemetry-jobs migrate up` first");
  if (options.boundary) {
    const problem = boundaryProblem(options.boundary, options.now, options.policy);
    if (problem) throw new ConfigError(problem);
  }
  const qualified = `${table.schema}.${table.name}`;
  // Adoption (the adopt command, rollup-hourly's first step) is kept out too: it adds the same
  // ingest_xid column and index that prepare adds, and must not build them beside a phase.
  const keys = [
    `convert:${qualified}`,
    `partition-manager:${qualified}`,
    `retention:${qualified}`,
    `adopt:${qualified}`,
  ];
  const result: ConvertResult = { exitCode: 0, phases: [] };
  const locked = await withAdvisoryLocks(db, keys, async () => {
    const phases: Exclude<ConvertPhase, "all">[] =
      options.phase === "all" ? ["preflight", "prepare", "swap", "verify"] : [options.phase];
    for (const phase of phases) {
      if (signal.aborted) {
        log.warn("stopping before the next phase (signal)", { phase });
        result.exitCode = 1;
        return;
      }
      const plog = log.child({ phase });
      try {
        const detail = await runPhase(db, plog, options, phase, signal);
        result.phases.push({
          phase,
          outcome: detail.already ? "already-done" : "done",
          detail: detail.report,
        });
        if (detail.exitCode !== 0) {
          result.exitCode = detail.exitCode;
          result.phases.at(-1)!.outcome = detail.exitCode === 2 ? "refused" : "failed";
          return;
        }
      } catch (error) {
        if (error instanceof Refusal) {
          plog.error(error.message, { exitCode: 2 });
          result.phases.push({ phase, outcome: "refused", detail: error.message });
          result.exitCode = 2;
          return;
        }
        throw error;
      }
    }
    if (options.phase === "all" && !options.dryRun)
      log.notice(
        `converted ${qualified}. Check it, then run \`migrate convert finalize --table ${qualified}\` (until then \`revert\` undoes the conversion)`,
      );
  });
  if (!locked.acquired) {
    log.error(
      `another job holds ${locked.busy} (a convert, partition-manager or retention run on ${qualified}); try again when it has finished`,
    );
    return { exitCode: 1, phases: [] };
  }
  return result;
}

interface PhaseOutcome {
  exitCode: 0 | 1 | 2;
  already?: boolean;
  report?: unknown;
}

async function runPhase(
  db: Kysely<any>,
  log: Logger,
  options: ConvertOptions,
  phase: Exclude<ConvertPhase, "all">,
  signal: AbortSignal,
): Promise<PhaseOutcome> {
  const table = parseQualifiedName(options.policy.table)!;
  const names = convertNames(table.name);
  // How the table is named in messages: `schema.name`, each part quoted as quote_ident would.
  const shown = displayRelation(table);
  const state = await readConversionState(db, table, names);
  const record = state.record;
  const storedDesign = record ? (record.plan as ConversionDesign) : null;
  const exec: ExecContext = {
    db,
    log,
    lockTimeoutMs: options.lockTimeoutMs,
    retryBudgetMs: options.retryBudgetMs,
    table,
    progressEveryMs: options.progressEveryMs,
    dryRun: options.dryRun,
    signal,
  };
  const input: ConvertInput = {
    policy: options.policy,
    now: options.now,
    boundary: options.boundary,
    dropUnique: options.dropUnique,
  };
  const active = record && record.phase !== "reverted" ? record : null;
  if (active && options.boundary && options.boundary.getTime() !== active.boundary.getTime())
    throw new Refusal(
      `the conversion in progress uses the boundary ${active.boundary.toISOString()}; --boundary ${options.boundary.toISOString()} differs (revert first to start over)`,
    );

  switch (phase) {
    case "status": {
      log.notice(
        record
          ? `conversion of ${shown}: ${record.phase}, boundary ${record.boundary.toISOString()}`
          : `no conversion of ${shown} recorded`,
        {
          event: "convert_status",
          phase: record?.phase ?? null,
          boundary: record?.boundary ?? null,
          state: { ...state, record: undefined },
        },
      );
      return { exitCode: 0, report: record };
    }

    case "preflight": {
      if (active && active.phase !== "preparing" && active.phase !== "prepared") {
        log.notice(`already ${active.phase}; nothing to check before the swap`, {
          conversionPhase: active.phase,
        });
        return { exitCode: 0, already: true };
      }
      const boundary = active?.boundary ?? options.boundary ?? defaultBoundary(options.now, options.policy);
      const facts = await readTableFacts(db, table, options.policy.timeColumn, boundary);
      const verdict = await assessWithClashes(db, facts, input, state, storedDesign);
      reportPreflight(log, facts, verdict, boundary);
      return { exitCode: verdict.blockers.length > 0 ? 2 : 0, report: { facts, verdict } };
    }

    case "prepare": {
      if (active?.phase === "swapped" || active?.phase === "finalized") {
        log.notice(`already ${active.phase}: nothing to prepare`);
        return { exitCode: 0, already: true };
      }
      const boundary = active?.boundary ?? options.boundary ?? defaultBoundary(options.now, options.policy);
      const facts = await readTableFacts(db, table, options.policy.timeColumn, boundary);
      // A resumed prepare keeps what the operator accepted when it started.
      const accepted =
        active && storedDesign
          ? { ...input, dropUnique: storedDesign.keptOnHistory.map((k) => k.name) }
          : input;
      const verdict = await assessWithClashes(db, facts, accepted, state, storedDesign);
      if (verdict.blockers.length > 0) {
        reportPreflight(log, facts, verdict, boundary);
        return { exitCode: 2 };
      }
      if (!active) for (const w of verdict.warnings) log.warn(w);
      const d = active && storedDesign ? storedDesign : design(facts, { ...input, boundary });
      if (!active) {
        await runStep(exec, recordStep(d));
        await pauseAtFaultPoint("convert-after-record", log);
      }
      const steps = prepareSteps(d, prepareState(facts, state));
      await runSteps(exec, steps, signal, "convert-after-prepare-step");
      if (!options.dryRun)
        log.notice(
          `prepared: the swap will attach ${d.table} as ${d.names.history} FROM (MINVALUE) TO (${d.boundary})`,
          {
            boundary: d.boundary,
            partitions: d.partitions.map((p) => p.name),
          },
        );
      return { exitCode: 0, already: steps.length === 1 };
    }

    case "swap": {
      if (active?.phase === "swapped" || active?.phase === "finalized") {
        log.notice(`already ${active.phase}`);
        return { exitCode: 0, already: true };
      }
      if (active?.phase !== "prepared" || !storedDesign) {
        // A dry run before (or in the middle of) prepare shows the swap prepare is heading for.
        if (options.dryRun && (options.phase === "all" || active?.phase === "preparing")) {
          const facts = await readTableFacts(db, table, options.policy.timeColumn, null);
          await runStep(
            exec,
            swapStep(active && storedDesign ? storedDesign : design(facts, input), facts.changeTriggers),
          );
          return { exitCode: 0 };
        }
        throw new Refusal(
          `${shown} is not prepared (${active?.phase ?? "no conversion recorded"}): run \`migrate convert prepare\` first`,
        );
      }
      // Re-check what could have changed since prepare: a view or a foreign key created on the table
      // since then would silently follow it to the historical partition.
      const facts = await readTableFacts(db, table, options.policy.timeColumn, active.boundary);
      const verdict = assess(
        facts,
        { ...input, dropUnique: storedDesign.keptOnHistory.map((k) => k.name) },
        state,
      );
      if (verdict.blockers.length > 0) {
        reportPreflight(log, facts, verdict, active.boundary);
        return { exitCode: 2 };
      }
      const drift = designDrift(facts, storedDesign);
      if (drift.length > 0)
        throw new Refusal(
          `${shown} changed since prepare (${drift.join("; ")}); the prepared partitioned table no longer matches it. ` +
            "Run `migrate convert revert` (it removes what prepare built), then prepare again",
        );
      const left = active.boundary.getTime() - Date.now();
      if (left < 3_600_000)
        log.warn(
          left <= 0
            ? `the boundary ${active.boundary.toISOString()} has passed: inserts dated after it fail on the CHECK until this swap commits`
            : `the boundary ${active.boundary.toISOString()} is ${Math.round(left / 60_000)} min away: inserts dated after it will fail on the CHECK until the swap`,
        );
      const missing = prepareSteps(storedDesign, prepareState(facts, state)).filter(
        (s) => s.id !== "prepared",
      );
      if (missing.length > 0)
        throw new Refusal(
          `prepare is not complete (${missing.map((s) => s.id).join(", ")}): run \`migrate convert prepare\` again`,
        );
      await pauseAtFaultPoint("convert-before-swap", log);
      // The facts were read just now: rollup-hourly may have installed its triggers since prepare.
      const outcome = await runStep(exec, swapStep(storedDesign, facts.changeTriggers));
      if (!options.dryRun && !options.policy.partitioned)
        log.warn(
          `the policy still says "partitioned": false for ${shown}: remove it now, or retention refuses the table and partition-manager ignores it`,
        );
      if (!options.dryRun)
        log.notice(
          `swapped in ${outcome.durationMs} ms (${outcome.attempts} attempt${outcome.attempts === 1 ? "" : "s"}): ${shown} is partitioned`,
          {
            event: "convert_swap",
            durationMs: outcome.durationMs,
            attempts: outcome.attempts,
          },
        );
      return { exitCode: 0, report: outcome };
    }

    case "verify": {
      if (options.dryRun) {
        log.notice(
          "dry run: verify only reads; it would compare counts and checksums, bounds, indexes and pruning",
        );
        return { exitCode: 0 };
      }
      if (!storedDesign || (active?.phase !== "swapped" && active?.phase !== "finalized"))
        throw new Refusal(
          `${shown} is not swapped (${record?.phase ?? "no conversion recorded"}): nothing to verify yet`,
        );
      const report = await verifyConversion(db, storedDesign, options.policy.interval);
      for (const c of report.checks)
        (c.ok ? log.info : log.error)(`${c.ok ? "ok" : "FAILED"}: ${c.check}: ${c.detail}`, {
          check: c.check,
          ok: c.ok,
        });
      log[report.ok ? "notice" : "error"](
        report.ok
          ? `verified: ${report.rows} rows in ${report.partitions} partitions (${report.historyRows} historical)`
          : "verification failed",
        { event: "convert_verify", ...report },
      );
      return { exitCode: report.ok ? 0 : 1, report };
    }

    case "revert": {
      if (!record || record.phase === "reverted") {
        log.notice(record ? "already reverted" : "no conversion recorded: nothing to revert");
        return { exitCode: 0, already: true };
      }
      if (record.phase === "finalized")
        throw new Refusal(
          `${shown} was finalized: revert is no longer possible (the objects it needs were dropped)`,
        );
      if (!storedDesign) throw new Refusal("the conversion record has no design; cannot revert");
      if (record.phase === "preparing" || record.phase === "prepared") {
        const facts = await readTableFacts(db, table, options.policy.timeColumn, null);
        await runSteps(
          exec,
          abandonSteps(storedDesign, prepareState(facts, state)),
          signal,
          "convert-after-prepare-step",
        );
        return { exitCode: 0 };
      }
      if (!state.historyAttached)
        throw new Refusal(
          `${storedDesign.names.history} is no longer a partition of ${shown} (did retention drop or detach it?): revert needs it`,
        );
      // Rows the new partitions hold (pruned by the bound: the historical partition is not read).
      const pending = await sql<{ n: number }>`
        SELECT count(*)::float8 AS n FROM ${relationSql(table)}
         WHERE ${sql.ref(storedDesign.timeColumn)} >= ${sql.raw(`'${storedDesign.boundary}'::timestamptz`)}
            OR ${sql.ref(storedDesign.timeColumn)} IS NULL`.execute(db);
      log.info(
        `${pending.rows[0]!.n} rows were written to the new partitions since the swap; revert copies them back under the lock`,
        {
          rowsToCopy: pending.rows[0]!.n,
        },
      );
      const columns = await copyableColumns(db, table.schema, table.name, storedDesign.names.history);
      const changeTriggers = await readChangeTriggers(db, table);
      let outcome: Awaited<ReturnType<typeof runStep>>;
      try {
        outcome = await runStep(exec, revertStep(storedDesign, columns, changeTriggers));
      } catch (error) {
        if ((error as { code?: string }).code === "23505")
          throw new Refusal(
            `revert rolled back, nothing changed: rows written since the swap duplicate a unique key the plain table enforces (${(error as Error).message}). ` +
              "Delete the duplicates from the new partitions (the unique constraints you passed to --drop-unique, or the old primary key), then revert again",
          );
        throw error;
      }
      if (!options.dryRun)
        log.notice(`reverted in ${outcome.durationMs} ms: ${shown} is one plain table again`, {
          event: "convert_revert",
          durationMs: outcome.durationMs,
          rowsCopied: outcome.rows[4] ?? null,
        });
      return { exitCode: 0, report: outcome };
    }

    case "finalize": {
      if (record?.phase === "finalized") {
        log.notice("already finalized");
        return { exitCode: 0, already: true };
      }
      if (record?.phase !== "swapped" || !storedDesign)
        throw new Refusal(
          `${shown} is not swapped (${record?.phase ?? "no conversion recorded"}): nothing to finalize`,
        );
      const present = new Set(
        await existingRelations(db, table.schema, [
          ...storedDesign.keptOnHistory.map((k) => k.name),
          storedDesign.names.oldKeyIndex,
        ]),
      );
      await runSteps(exec, finalizeSteps(storedDesign, present), signal, "convert-after-prepare-step");
      if (!options.dryRun) log.notice(`finalized: ${shown} is an ordinary managed partitioned table now`);
      return { exitCode: 0 };
    }
  }
}

async function runSteps(
  exec: ExecContext,
  steps: Step[],
  signal: AbortSignal,
  fault: "convert-after-prepare-step",
) {
  for (const step of steps) {
    if (signal.aborted)
      throw new Error(`stopped before step ${step.id} (signal); run the same command again to continue`);
    await runStep(exec, step);
    if (!exec.dryRun) await pauseAtFaultPoint(fault, exec.log, step.id);
  }
}

/** Columns the partitioned table and the historical partition both have (non-generated), in the parent's order. */
async function copyableColumns(
  db: Kysely<any>,
  schema: string,
  parent: string,
  history: string,
): Promise<string[]> {
  const r = await sql<{ name: string }>`
    SELECT a.attname AS name FROM pg_attribute a
     WHERE a.attrelid = ${relationOidSql({ schema, name: parent })} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
       AND EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = ${relationOidSql({ schema, name: history })}
                      AND b.attname = a.attname AND NOT b.attisdropped)
     ORDER BY a.attnum`.execute(db);
  return r.rows.map((x) => x.name);
}

/** What changed on the table since prepare designed the partitioned table from it. */
export function designDrift(facts: TableFacts, d: ConversionDesign): string[] {
  const out: string[] = [];
  const now = facts.columns.filter((c) => !c.generated).map((c) => c.name);
  const added = now.filter((c) => !d.columns.includes(c));
  const removed = d.columns.filter((c) => !now.includes(c));
  if (added.length > 0) out.push(`columns added: ${added.join(", ")}`);
  if (removed.length > 0) out.push(`columns dropped: ${removed.join(", ")}`);
  const ours = new Set([d.names.newKeyIndex, d.names.oldKeyIndex]);
  const expected = new Set(d.parentIndexes.filter((i) => !i.replacesKey).map((i) => i.original));
  const kept = new Set(d.keptOnHistory.map((k) => k.name));
  const present = facts.indexes.map((i) => i.name).filter((n) => !ours.has(n));
  const newIndexes = present.filter((n) => !expected.has(n) && !kept.has(n) && n !== d.primaryKey?.name);
  const goneIndexes = [...expected].filter((n) => !present.includes(n));
  if (newIndexes.length > 0) out.push(`indexes created: ${newIndexes.join(", ")}`);
  if (goneIndexes.length > 0) out.push(`indexes dropped: ${goneIndexes.join(", ")}`);
  return out;
}

function prepareState(facts: TableFacts, state: ConversionState): PrepareState {
  return {
    hasIngestColumn: facts.columns.some((c) => c.name === INGEST_COLUMN),
    boundCheck: state.boundCheck,
    builtIndexes: state.builtIndexes,
    parentExists: state.parentExists,
  };
}

async function assessWithClashes(
  db: Kysely<any>,
  facts: TableFacts,
  input: ConvertInput,
  state: ConversionState,
  stored: ConversionDesign | null,
): Promise<Assessment> {
  const resuming = state.record && state.record.phase !== "reverted" ? stored : null;
  if (facts.exists && facts.relkind === "r") {
    const d = resuming ?? design(facts, input);
    // Objects a resumed prepare already made are ours, not clashes.
    const ours = new Set(resuming ? namesToCreate(resuming) : []);
    const clashes = (await existingRelations(db, facts.table.schema, namesToCreate(d))).filter(
      (n) => !ours.has(n),
    );
    return assess(facts, input, state, clashes);
  }
  return assess(facts, input, state);
}

function reportPreflight(log: Logger, facts: TableFacts, verdict: Assessment, boundary: Date): void {
  const name = `${facts.table.schema}.${facts.table.name}`;
  if (facts.exists) {
    const pk = facts.constraints.find((k) => k.type === "p");
    log.info(
      `${name}: ${facts.rowEstimate < 0 ? "row count unknown (never analyzed)" : `about ${Math.round(facts.rowEstimate)} rows`}, ${(facts.totalBytes / 2 ** 20).toFixed(1)} MiB, ` +
        `time ${facts.minTime?.toISOString() ?? "-"} .. ${facts.maxTime?.toISOString() ?? "-"}; boundary ${boundary.toISOString()}`,
      {
        event: "convert_preflight",
        rowEstimate: facts.rowEstimate,
        bytes: facts.totalBytes,
        minTime: facts.minTime,
        maxTime: facts.maxTime,
        boundary,
      },
    );
    log.info(`primary key: ${pk ? pk.definition : "none"}`);
    for (const k of facts.constraints.filter((c) => c.type !== "p"))
      log.info(`constraint ${k.name}: ${k.definition}`);
    for (const i of facts.indexes) log.info(`index ${i.name}${i.valid ? "" : " (INVALID)"}: ${i.definition}`);
    for (const r of [
      ...facts.incomingForeignKeys,
      ...facts.dependentViews,
      ...facts.triggers,
      ...facts.rules,
      ...facts.publications,
    ])
      log.info(`${r.kind} ${r.name}${r.detail ? `: ${r.detail}` : ""}`);
    for (const tg of facts.changeTriggers)
      log.info(
        `change tracking trigger ${tg.name} (rollup-hourly's${tg.enabled === "O" ? "" : `, tgenabled ${tg.enabled}`}): the swap moves it to the partitioned table, revert moves it back`,
      );
    for (const c of facts.columns.filter((x) => x.identity !== "" || x.defaultExpr?.startsWith("nextval(")))
      log.info(
        `column ${c.name}: ${c.identity ? `identity (${c.identity === "a" ? "ALWAYS" : "BY DEFAULT"}) ${c.identitySequence}` : c.defaultExpr}`,
      );
    for (const s of facts.ownedSequences) log.info(`sequence ${s.sequence} owned by ${s.column}`);
    log.info(
      `grants: ${facts.grants.map((g) => `${g.privilege} to ${g.grantee}`).join(", ") || "none besides the owner's"}; owner ${facts.owner}; replica identity ${facts.replicaIdentity === "d" ? "default" : facts.replicaIdentity}`,
    );
  }
  for (const w of verdict.warnings) log.warn(`warning: ${w}`);
  if (verdict.blockers.length === 0) {
    log.notice(`preflight: ${name} can be converted`, {
      event: "convert_verdict",
      ok: true,
      warnings: verdict.warnings,
    });
    return;
  }
  for (const b of verdict.blockers)
    log.error(`cannot convert: ${b.reason}: ${b.objects.join("; ")}. Fix: ${b.fix}`, { blocker: b });
  log.error(
    `preflight: ${name} cannot be converted safely (${verdict.blockers.length} problem${verdict.blockers.length === 1 ? "" : "s"}); nothing was changed`,
    {
      event: "convert_verdict",
      ok: false,
      blockers: verdict.blockers,
    },
  );
}
