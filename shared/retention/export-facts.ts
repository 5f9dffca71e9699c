// Mode "export"'s facts: what already sits in the directory each expired partition would be
// exported to, so that the plan (and a dry run) says what the run will find there instead of
// promising an export the run then refuses. Only the manifests are read (a small JSON file per
// expired partition, never the part files); a partition whose directory holds a valid manifest is
// also counted, in one transaction under lock_timeout, so the plan can set its rows against the
// manifest's. That happens only where an export already exists (a restored partition, a re-created
// month), and the run then reads the whole partition to verify anyway.
import { type Kysely, sql } from "kysely";
import { type Manifest, readManifest } from "../cold/manifest.ts";
import type { TablePolicy } from "../config/policy.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { displayRelation, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { TableCatalog } from "../partitions/catalog.ts";
import { expiryRange, isExpired } from "./expiry.ts";
import { exportDirectory, exportOf, exportTarget } from "./export-target.ts";
import type { ExistingExport } from "./plan.ts";

type Lock = { lockTimeoutMs: number; budgetMs: number };

/**
 * displayRelation(partition) -> what its export directory already holds, for every expired child
 * with a lower bound (those the planner may export); a directory without a manifest is left out.
 * undefined when the policy does not export.
 */
export async function readExistingExports(
  db: Kysely<DB>,
  policy: TablePolicy,
  catalog: TableCatalog,
  cutoff: Date,
  lock: Lock,
): Promise<ReadonlyMap<string, ExistingExport> | undefined> {
  const block = exportOf(policy);
  if (!block) return undefined;
  const found = new Map<string, ExistingExport>();
  const manifests: { relation: Relation; dir: string; manifest: Manifest }[] = [];
  for (const child of catalog.children) {
    const range = child.detachPending ? undefined : expiryRange(child.bound);
    if (!range || !Number.isFinite(range.from) || !Number.isFinite(range.to)) continue;
    const [from, to] = [new Date(range.from), new Date(range.to)];
    if (!isExpired(to, cutoff)) continue;
    const relation: Relation = { schema: child.schema, name: child.name };
    const dir = exportDirectory(block.to, exportTarget(policy, relation, { from, to }));
    const read = readManifestOf(dir);
    if (read.state === "ok") manifests.push({ relation, dir, manifest: read.manifest });
    else if (read.state !== "missing") found.set(displayRelation(relation), { dir, ...read });
  }
  if (manifests.length === 0) return found;
  const relations = manifests.map((m) => m.relation);
  const { result: rows } = await withLockRetry(
    db,
    {
      ...lock,
      what: `count the rows of ${policy.table}'s partitions already exported`,
      contended: relations[0]!,
    },
    (trx) => countRows(trx, relations),
  );
  for (const [i, { relation, dir, manifest }] of manifests.entries())
    found.set(displayRelation(relation), { dir, state: "ok", manifest, rowsNow: rows[i]! });
  return found;
}

/** readManifest, with a file system error (ENOTDIR, EACCES...) kept as a fact instead of thrown. */
function readManifestOf(
  dir: string,
): ReturnType<typeof readManifest> | { state: "unreadable"; reason: string } {
  try {
    return readManifest(dir);
  } catch (error) {
    return { state: "unreadable", reason: (error as Error).message };
  }
}

/** Each relation's own rows (ONLY), in one statement. */
async function countRows(db: Kysely<DB>, relations: readonly Relation[]): Promise<number[]> {
  const r = await sql<{ n: string[] }>`
    SELECT ARRAY[${sql.join(relations.map((x) => sql`(SELECT count(*) FROM ONLY ${relationSql(x)})`))}]::text[] AS n`.execute(
    db,
  );
  return (r.rows[0]?.n ?? []).map(Number);
}
