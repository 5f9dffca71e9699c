// SQL fragments for one rollup policy. Identifiers come from the validated policy (lower-case
// identifiers only) and are still quoted, each part on its own (relation.ts).
import { type RawBuilder, sql } from "kysely";
import { policyTable, rollupTarget } from "../config/policy.ts";
import { columnSql, relationSql } from "../db/relation.ts";
import type { RollupSource } from "./source.ts";

export interface RollupSql {
  source: RawBuilder<unknown>;
  target: RawBuilder<unknown>;
  /** Source time column, qualified with alias s. */
  time: RawBuilder<unknown>;
  /** Source group column, qualified with alias s. */
  group: RawBuilder<unknown>;
  /** Target group column (text). */
  targetGroup: RawBuilder<unknown>;
  /** A FROM item yielding (key text, value float8): the finite numeric metrics of row s. */
  metricPairs: RawBuilder<unknown>;
}

export function rollupSql(policy: RollupSource): RollupSql {
  const { rollup } = policy;
  const metrics = rollup.metrics;
  let metricPairs: RawBuilder<unknown>;
  if ("jsonb" in metrics) {
    metricPairs = sql`telemetry_jobs.numeric_metrics(s.${columnSql(metrics.jsonb)}) AS m (key, value)`;
  } else {
    // NULL, NaN and infinities are not measurements.
    const rows = metrics.columns.map((c) => sql`(${sql.lit(c)}::text, s.${columnSql(c)}::double precision)`);
    metricPairs = sql`(SELECT v.key, v.value FROM (VALUES ${sql.join(rows)}) AS v (key, value)
       WHERE v.value IS NOT NULL AND v.value NOT IN ('NaN', 'Infinity', '-Infinity')) AS m`;
  }
  return {
    source: relationSql(policyTable(policy)),
    target: relationSql(rollupTarget(rollup)),
    time: sql`s.${columnSql(policy.timeColumn)}`,
    group: sql`s.${columnSql(rollup.groupBy)}`,
    targetGroup: columnSql(rollup.groupColumn),
    metricPairs,
  };
}

/** Rows of the shard's groups only (always true for one shard). */
export function shardPredicate(group: RawBuilder<unknown>, shard: { count: number; index: number }) {
  return shard.count === 1
    ? sql`true`
    : sql`telemetry_jobs.shard_of(${group}::text, ${shard.count}::int) = ${shard.index}::int`;
}
