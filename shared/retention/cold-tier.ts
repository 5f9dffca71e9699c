// The cold tier's side of a retention run: a pg pool for the export and its verification (they
// read rows as PostgreSQL's exact text, through pg's own client, which the Kysely instance does not
// expose), the product version the manifests record, and whether valid exports are rewritten.
// The retention command registers it under its Kysely instance, opened on first use next to its
// database (openPool, shared/db/connect.ts: the same settings); the removal steps, which are given
// the instance, find it there.
import type { Kysely } from "kysely";
import type pg from "pg";
import type { DB } from "../db/schema.ts";

export interface ColdTier {
  readonly pool: pg.Pool;
  readonly productVersion: string;
  /** --re-export: write a partition's files again even when a valid export of it exists. */
  readonly reExport: boolean;
}

const tiers = new WeakMap<Kysely<DB>, () => Promise<ColdTier>>();

/**
 * `open` runs on first use only, once: a run that neither exports nor finishes an export's leftover
 * (a table a killed export left detached, finished whatever the policy's mode is now) opens nothing.
 */
export function registerColdTier(db: Kysely<DB>, open: () => Promise<ColdTier>): void {
  let opened: Promise<ColdTier> | undefined;
  tiers.set(db, () => {
    opened ??= open();
    return opened;
  });
}

export async function coldTierOf(db: Kysely<DB>): Promise<ColdTier> {
  const tier = tiers.get(db);
  if (!tier)
    throw new Error(
      'mode "export" needs the cold tier\'s connection, which `telemetry-jobs retention` opens; none was registered for this database',
    );
  return await tier();
}
