// Phase verify: read-only checks of the converted table (verify.ts), each logged.

import { EXIT } from "../config/errors.ts";
import { type PhaseContext, type PhaseOutcome, Refusal } from "./phase-context.ts";
import { verifyConversion } from "./verify.ts";

export async function verifyPhase(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { log, active, record } = ctx;
  if (ctx.options.dryRun) {
    log.notice(
      "dry run: verify only reads; it would compare counts and checksums, bounds, indexes and pruning",
    );
    return { exitCode: EXIT.ok };
  }
  const swapped = active?.phase === "swapped" || active?.phase === "finalized";
  const storedDesign = swapped ? ctx.storedDesign() : null;
  if (!storedDesign)
    throw new Refusal(
      `${ctx.shown} is not swapped (${record?.phase ?? "no conversion recorded"}): nothing to verify yet`,
    );
  const report = await verifyConversion(ctx.db, storedDesign, ctx.options.policy.interval);
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
  return { exitCode: report.ok ? EXIT.ok : EXIT.failed, report };
}
