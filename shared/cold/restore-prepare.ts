// Step 1 of a restore after verification: reads what the target looks like and decides, refusing
// (RestoreRefused, exit 2) before anything is written.
import type { Kysely } from "kysely";
import type { TablePolicy } from "../config/policy.ts";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { readCatalog } from "../partitions/catalog.ts";
import type { Source } from "./restore.ts";
import { relationKind, stagingRelation } from "./restore-load.ts";
import {
  type AttachDecision,
  checkColumns,
  checkInto,
  decideAttach,
  hasRows,
  manifestBounds,
  RestoreRefused,
  targetState,
} from "./restore-plan.ts";

export interface Prepared {
  /** True: attach as a partition of the table; false: a plain table for inspection (--into). */
  attach: boolean;
  target: Relation;
  staging: Relation;
  from: Date;
  to: Date;
  decision?: AttachDecision;
  /** What the restore will do, in one sentence (logged, and all that --dry-run does). */
  plan: string;
}

function rangeText(from: Date, to: Date): string {
  return `[${from.toISOString()}, ${to.toISOString()})`;
}

export async function prepareInto(db: Kysely<DB>, { manifest }: Source, schema: string): Promise<Prepared> {
  const { from, to } = manifestBounds(manifest);
  const target = { schema, name: manifest.partition.relation.name };
  const staging = stagingRelation(schema, manifest);
  await checkInto(db, target, staging);
  return {
    attach: false,
    target,
    staging,
    from,
    to,
    plan: `restore: load ${manifest.rows} rows of ${rangeText(from, to)} into the new table ${displayRelation(target)} (through ${displayRelation(staging)}) for inspection`,
  };
}

export async function prepareAttach(db: Kysely<DB>, source: Source, policy: TablePolicy): Promise<Prepared> {
  const { manifest, table } = source;
  const lock = { lockTimeoutMs: policy.lockTimeoutMs, budgetMs: policy.retryBudgetMs };
  const catalog = await readCatalog(db, table, policy.timeColumn, policy.interval, lock);
  if (catalog.keyColumn !== manifest.partition.keyColumn)
    throw new RestoreRefused(
      `${displayRelation(table)} is partitioned by "${catalog.keyColumn}", the export by "${manifest.partition.keyColumn}"`,
    );
  await checkColumns(db, table, manifest);
  const { from, to } = manifestBounds(manifest);
  const target = { schema: table.schema, name: manifest.partition.relation.name };
  const staging = stagingRelation(table.schema, manifest);
  const state = await targetState(db, target, catalog);
  const decision = decideAttach(
    {
      catalog,
      target: state,
      targetHasRows: (state === "child" || state === "standalone") && (await hasRows(db, target)),
      staging: await relationKind(db, staging),
    },
    target,
    staging,
    { from, to },
  );
  const steps = [
    ...(decision.dropLeftover
      ? [`drop the empty table ${displayRelation(target)} an interrupted partition creation left,`]
      : []),
    `load ${manifest.rows} rows into ${displayRelation(staging)}, check them against the manifest,`,
    decision.replaceEmpty
      ? `then attach that table in place of the empty partition ${displayRelation(target)} ${rangeText(from, to)}`
      : `then attach that table as the partition ${displayRelation(target)} ${rangeText(from, to)}`,
    ...(decision.defaultRows > 0
      ? [`with the ${decision.defaultRows} rows of that range now in DEFAULT`]
      : []),
  ];
  return {
    attach: true,
    target,
    staging,
    from,
    to,
    decision,
    plan: `restore: ${steps.join(" ")}`,
  };
}
