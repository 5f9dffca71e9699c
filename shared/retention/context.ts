// What every retention step is given, what it reports, and how it retries for a lock.
import type { Kysely } from "kysely";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";

export interface RetentionContext {
  db: Kysely<DB>;
  policy: TablePolicy;
  log: Logger;
  signal: AbortSignal;
  now: Date;
  /** When row deletes must stop (epoch ms): the policy's time budget is per run, not per action. */
  deadline?: number;
  /** How long one row-delete batch should take (ms); see batch-size.ts for the default. */
  batchTargetMs?: number;
}

export interface RetentionOutcome {
  rows: number;
  bytes: number;
  /** How it was done, for the audit trail and the logs (e.g. "detach concurrently, drop"). */
  path: string;
  /** Row deletes stopped before the end: at the time budget, on SIGTERM, on a hold, or because the index they read went. */
  incomplete?: boolean;
  /** Where a block-range pass stopped: the next such pass starts there (row deletes in time order need no mark). */
  nextBlock?: number;
  /** Row deletes: how many batches (transactions) they took. */
  batches?: number;
  /** Its audit rows were written in the transaction that did it (see AuditOutcomes). */
  audited?: boolean;
}

/**
 * Writes the audit rows of what a transaction did, given its outcomes, inside that transaction
 * (`trx`), so that a kill or a failure leaves either both or neither.
 */
export type AuditOutcomes = (trx: Kysely<DB>, outcomes: readonly RetentionOutcome[]) => Promise<void>;

export function retryOptions(ctx: RetentionContext, what: string) {
  return {
    lockTimeoutMs: ctx.policy.lockTimeoutMs,
    budgetMs: ctx.policy.retryBudgetMs,
    what,
    contended: policyTable(ctx.policy),
    signal: ctx.signal,
    onRetry: (i: { attempt: number; waitMs: number; error: unknown }) =>
      ctx.log.warn("lock not available, retrying", { what, ...i }),
  };
}
