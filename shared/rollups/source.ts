// A rollup source: a table policy with a rollup block. The policy is narrowed once, where a job
// picks its tables, and the narrowed type is passed on, so nothing below needs to assert that the
// rollup block is there.
import type { RollupPolicy, TablePolicy } from "../config/policy.ts";
import type { TableContext } from "../run/runner.ts";
import type { ShardSpec } from "./plan.ts";

export type RollupSource = TablePolicy & { readonly rollup: RollupPolicy };

export function isRollupSource(policy: TablePolicy): policy is RollupSource {
  return policy.rollup !== undefined;
}

/** The policy as a rollup source; throws for a policy without a rollup block. */
export function rollupSourceOf(policy: TablePolicy): RollupSource {
  if (!isRollupSource(policy)) throw new Error(`${policy.table} has no rollup in its policy`);
  return policy;
}

/** A table's context in a run, its policy narrowed to a rollup source. */
export type RollupContext = Omit<TableContext, "policy"> & { readonly policy: RollupSource };

/** The context with its policy narrowed; throws for a policy without a rollup block. */
export function rollupContext(ctx: TableContext): RollupContext {
  return { ...ctx, policy: rollupSourceOf(ctx.policy) };
}

/** What one task of a run rolls up. */
export interface RollupTask {
  readonly source: RollupSource;
  /** The task's share of the groups. */
  readonly shard: ShardSpec;
  /**
   * The source's group column may hold NULL (it is not a validated NOT NULL column). Such rows
   * belong to no bucket: the queries leave them out and count them. False adds nothing to any query.
   */
  readonly groupMayBeNull: boolean;
}
