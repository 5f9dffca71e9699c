// Retention holds: "keep this partition past its cutoff until <date>, because <reason>".
import type { Kysely } from "kysely";
import type { DB } from "../db/schema.ts";

export interface RetentionHold {
  /** schema.partition */
  readonly partition: string;
  readonly until: Date;
  readonly reason: string;
  readonly createdBy: string;
}

export async function listHolds(db: Kysely<DB>): Promise<RetentionHold[]> {
  const rows = await db
    .selectFrom("telemetry_jobs.retention_holds")
    .select(["partition_name", "hold_until", "reason", "created_by"])
    .orderBy("partition_name")
    .execute();
  return rows.map((r) => ({
    partition: r.partition_name,
    until: r.hold_until,
    reason: r.reason,
    createdBy: r.created_by,
  }));
}

export async function placeHold(
  db: Kysely<DB>,
  hold: { partition: string; until: Date; reason: string },
): Promise<void> {
  await db
    .insertInto("telemetry_jobs.retention_holds")
    .values({ partition_name: hold.partition, hold_until: hold.until, reason: hold.reason })
    .onConflict((oc) =>
      oc.column("partition_name").doUpdateSet({ hold_until: hold.until, reason: hold.reason }),
    )
    .execute();
}

export async function releaseHold(db: Kysely<DB>, partition: string): Promise<boolean> {
  const r = await db
    .deleteFrom("telemetry_jobs.retention_holds")
    .where("partition_name", "=", partition)
    .executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}
