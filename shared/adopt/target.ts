// The rollup target table, made by the product when the policy names one that does not exist yet.
//
// Its shape is fixed by what rollup-hourly writes: the group column (text, the source's group value
// as text), metric_key, bucket_ts (the hour, UTC), sample_count, sum, min, max, avg, updated_at,
// with the key (group, metric_key, bucket_ts) its upserts name in ON CONFLICT. How it is stored
// comes from the policy file: when the target has a policy entry of its own (timeColumn bucket_ts),
// partition-manager and retention manage it like any other table, so it is made RANGE-partitioned
// on bucket_ts (unless that entry says partitioned: false), with its DEFAULT partition, so the
// first rollup run has somewhere to write before partition-manager has made the monthly children
// (partition-manager moves those rows into them on its next run). Without an
// entry of its own the target is a plain table: rollups are small (one row per group, metric and
// hour) and nothing expires them.
//
// The table is new, so creating it locks nothing an application uses; it is still made in one
// transaction under lock_timeout like every other DDL of the product, so a kill leaves either no
// table or the whole of it.
import { type Kysely, type RawBuilder, sql } from "kysely";
import { policyTable, rollupTarget, type TablePolicy } from "../config/policy.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { DEFAULT_PARTITION_MARKER } from "../partitions/naming.ts";
import { defaultPartitionName } from "../partitions/plan.ts";
import { rollupSourceOf } from "../rollups/source.ts";

/** The comment on a target the product made: operators (and the runbook's way back) can tell. */
export const TARGET_COMMENT_PREFIX = "telemetry-jobs: hourly rollups of";

export interface TargetShape {
  target: Relation;
  groupColumn: string;
  source: Relation;
  /** RANGE-partitioned on bucket_ts (the target has a partitioned policy entry of its own). */
  partitioned: boolean;
  /** The DEFAULT partition to make with it, by partition-manager's name. */
  defaultPartition: Relation | null;
}

/** What the target will look like, from the source's rollup block and the target's own entry. */
export function targetShape(policy: TablePolicy, policies: readonly TablePolicy[]): TargetShape {
  const { rollup } = rollupSourceOf(policy);
  const target = rollupTarget(rollup);
  const own = policies.find((p) => p.table === rollup.target);
  const partitioned = own?.partitioned === true;
  return {
    target,
    groupColumn: rollup.groupColumn,
    source: policyTable(policy),
    partitioned,
    // The policy requires a partitioned target to keep its DEFAULT partition (checkRollupTargets).
    defaultPartition: partitioned ? { schema: target.schema, name: defaultPartitionName(target.name) } : null,
  };
}

/** The statements that make the target, in order (one transaction). */
export function createTargetStatements(shape: TargetShape): RawBuilder<unknown>[] {
  const t = relationSql(shape.target);
  const g = columnSql(shape.groupColumn);
  const statements: RawBuilder<unknown>[] = [
    sql`CREATE TABLE ${t} (
      ${g} text NOT NULL,
      metric_key text NOT NULL,
      bucket_ts timestamptz NOT NULL,
      sample_count bigint NOT NULL,
      sum double precision NOT NULL,
      min double precision NOT NULL,
      max double precision NOT NULL,
      avg double precision NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (${g}, metric_key, bucket_ts)
    )${shape.partitioned ? sql` PARTITION BY RANGE (bucket_ts)` : sql``}`,
    sql`COMMENT ON TABLE ${t} IS ${sql.lit(`${TARGET_COMMENT_PREFIX} ${displayRelation(shape.source)}`)}`,
  ];
  if (shape.defaultPartition) {
    const d = relationSql(shape.defaultPartition);
    statements.push(
      sql`CREATE TABLE ${d} PARTITION OF ${t} DEFAULT`,
      sql`COMMENT ON TABLE ${d} IS ${sql.lit(DEFAULT_PARTITION_MARKER)}`,
    );
  }
  return statements;
}

export type TargetState = "present" | "missing" | "schema_missing";

export function schemaMissingMessage(target: Relation): string {
  return `${displayRelation(target)}: schema "${target.schema}" does not exist, and the product creates no schema but its own. Create it (CREATE SCHEMA ...) or name a target in an existing schema`;
}

export async function readTargetState(db: Kysely<DB>, target: Relation): Promise<TargetState> {
  const r = await sql<{ schema: boolean; table: boolean }>`
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ${target.schema}) AS schema,
           ${relationOidSql(target)} IS NOT NULL AS table`.execute(db);
  const row = r.rows[0]!;
  return row.table ? "present" : row.schema ? "missing" : "schema_missing";
}

/** Makes the target in one transaction under lock_timeout, retried within the policy's budget. */
export async function createTarget(
  db: Kysely<DB>,
  shape: TargetShape,
  options: { lockTimeoutMs: number; retryBudgetMs: number; signal: AbortSignal },
): Promise<void> {
  await withLockRetry(
    db,
    {
      lockTimeoutMs: options.lockTimeoutMs,
      budgetMs: options.retryBudgetMs,
      what: `create rollup target ${displayRelation(shape.target)}`,
      contended: shape.target,
      signal: options.signal,
    },
    async (trx) => {
      // Another run may have made it since the facts were read (the adoption lock makes that rare).
      if ((await readTargetState(trx, shape.target)) === "present") return;
      for (const statement of createTargetStatements(shape)) await statement.execute(trx);
    },
  );
}
