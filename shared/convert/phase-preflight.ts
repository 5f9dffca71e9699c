// Phase preflight: report what the table is and whether it can be converted. Read-only. Prepare
// and swap run the same assessment again and report it the same way when it refuses.
import type { Kysely } from "kysely";
import { EXIT } from "../config/errors.ts";
import { displayRelation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { type Assessment, assess } from "./assess.ts";
import { defaultBoundary } from "./boundary.ts";
import { type ConversionDesign, type ConvertInput, design, namesToCreate } from "./design.ts";
import { executeSteps } from "./execute.ts";
import type { ConversionState, TableFacts } from "./facts.ts";
import { existingRelations } from "./facts-state.ts";
import { readTableFacts } from "./facts-table.ts";
import { type ConversionRecord, type PhaseContext, type PhaseOutcome, REFUSED } from "./phase-context.ts";

/** The boundary a phase works with: the recorded one, --boundary, or the default. */
export function phaseBoundary(ctx: PhaseContext): Date {
  return ctx.active?.boundary ?? ctx.options.boundary ?? defaultBoundary(ctx.options.now, ctx.options.policy);
}

/** After the swap there is nothing left to check before it. */
function pastPreflight(active: ConversionRecord | null): active is ConversionRecord {
  return active !== null && active.phase !== "preparing" && active.phase !== "prepared";
}

export async function preflightPhase(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { active, log } = ctx;
  if (pastPreflight(active)) {
    log.notice(`already ${active.phase}; nothing to check before the swap`, {
      conversionPhase: active.phase,
    });
    return { exitCode: EXIT.ok, already: true };
  }
  const boundary = phaseBoundary(ctx);
  const facts = await readTableFacts(ctx.db, ctx.table, ctx.options.policy.timeColumn, boundary);
  const verdict = await assessWithClashes(ctx.db, facts, ctx.input, ctx.state, ctx.storedDesign);
  reportPreflight(log, facts, verdict, boundary);
  return { exitCode: verdict.blockers.length > 0 ? REFUSED : EXIT.ok, report: { facts, verdict } };
}

/** assess(), with the names the conversion would create that other objects already have. */
export async function assessWithClashes(
  db: Kysely<DB>,
  facts: TableFacts,
  input: ConvertInput,
  state: ConversionState,
  stored: () => ConversionDesign | null,
): Promise<Assessment> {
  if (facts.exists && facts.relkind === "r") {
    const resuming = state.record && state.record.phase !== "reverted" ? stored() : null;
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

/**
 * Prepare's and swap's refusal when the assessment finds blockers: through the executor, which
 * runs nothing and reports the refusal as the full preflight report.
 */
export async function refuseAsPreflight(
  ctx: PhaseContext,
  facts: TableFacts,
  verdict: Assessment,
  boundary: Date,
): Promise<PhaseOutcome> {
  await executeSteps(ctx, {
    steps: [],
    refusal: {
      reason: `${displayRelation(facts.table)} cannot be converted safely`,
      report: () => reportPreflight(ctx.log, facts, verdict, boundary),
    },
  });
  return { exitCode: REFUSED };
}

export function reportPreflight(log: Logger, facts: TableFacts, verdict: Assessment, boundary: Date): void {
  if (facts.exists) reportFacts(log, facts, boundary);
  reportVerdict(log, facts, verdict);
}

function reportFacts(log: Logger, facts: TableFacts, boundary: Date): void {
  const pk = facts.constraints.find((k) => k.type === "p");
  log.info(
    `${displayRelation(facts.table)}: ${facts.rowEstimate < 0 ? "row count unknown (never analyzed)" : `about ${Math.round(facts.rowEstimate)} rows`}, ${(facts.totalBytes / 2 ** 20).toFixed(1)} MiB, ` +
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

function reportVerdict(log: Logger, facts: TableFacts, verdict: Assessment): void {
  const name = displayRelation(facts.table);
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
