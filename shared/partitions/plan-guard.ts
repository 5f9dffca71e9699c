// The planner's last step beside a large DEFAULT partition: prove the ranges about to be attached
// absent from DEFAULT once, before their attaches, so that no attach scans DEFAULT. Pure.
//
// Attaching a partition must prove that DEFAULT holds no row of the new range. PostgreSQL scans all
// of DEFAULT to prove it, under ACCESS EXCLUSIVE on DEFAULT, unless a valid CHECK constraint on
// DEFAULT already implies it. The guard is that constraint: added NOT VALID (ACCESS EXCLUSIVE on
// DEFAULT for a catalog update only), then validated (one scan under SHARE UPDATE EXCLUSIVE, which
// no reader or writer notices), covering every guarded range of the run; each attach then holds
// DEFAULT for a catalog update only, however many rows DEFAULT keeps. It is dropped at the end of
// the run: once the ranges are attached it says nothing DEFAULT's own partition constraint does not;
// and a run that ends before that (a failure, a stop request) drops it on its way out.
//
// The price: from the moment the guard is added until its range is attached, an INSERT of a row
// dated in a guarded range fails (check violation) instead of landing in DEFAULT. So the guard only
// covers ranges that start more than FUTURE_MARGIN_MS after now (only a device clock more than a
// day ahead writes there; the executor checks the server's clock too), that have no row in DEFAULT
// (rows to move make it a rescue, which takes DEFAULT's lock anyway), and only when DEFAULT is large
// enough for its scan to matter (GUARD_MIN_DEFAULT_ROWS): below that, the scan is cheaper than the
// two extra catalog locks the guard takes. Ranges nearer than the margin keep the scanning attach,
// during which writers wait rather than fail.
import type { TableCatalog } from "./catalog.ts";
import type { PartitionAction } from "./plan.ts";
import { FUTURE_MARGIN_MS } from "./time.ts";

/** DEFAULT's rows from which the guard is planned: a scan of fewer costs a few milliseconds. */
export const GUARD_MIN_DEFAULT_ROWS = 100_000;

export interface GuardedRange {
  readonly from: Date;
  readonly to: Date;
}

/** Ranges of `actions` the guard may cover (see the file comment), in action order. */
export function guardableRanges(
  catalog: TableCatalog,
  actions: readonly PartitionAction[],
  now: Date,
): GuardedRange[] {
  if (!catalog.defaultPartition) return [];
  const defaultRows = catalog.defaultBuckets.reduce((n, b) => n + b.rows, 0) + catalog.defaultNullKeyRows;
  if (defaultRows < GUARD_MIN_DEFAULT_ROWS) return [];
  return actions.flatMap((a) =>
    a.kind === "create_partition" &&
    a.defaultRows === 0 &&
    a.from.getTime() >= now.getTime() + FUTURE_MARGIN_MS
      ? [{ from: a.from, to: a.to }]
      : [],
  );
}

/**
 * The actions with the guard added before the first create it covers and its removal last. A guard
 * an earlier run left (it failed or was stopped before its removal, or was killed) is dropped
 * first, before anything that can fail for another reason: it may name a range that has begun
 * since, and then it refuses current rows; dropped at the end, it would stay whenever an earlier
 * action failed. (The run also drops its own guard when it ends early: manage.ts.)
 */
export function withDefaultGuard(
  table: string,
  catalog: TableCatalog,
  actions: readonly PartitionAction[],
  now: Date,
): PartitionAction[] {
  const def = catalog.defaultPartition;
  if (!def) return [...actions];
  const ranges = guardableRanges(catalog, actions, now);
  const out = [...actions];
  if (ranges.length > 0) {
    const first = out.findIndex((a) => a.kind === "create_partition" && a.from === ranges[0]!.from);
    out.splice(first, 0, { kind: "guard_default", table, partition: def.name, ranges });
    out.push({ kind: "drop_default_guard", table, partition: def.name, leftover: false });
  }
  if (catalog.defaultGuard)
    out.unshift({ kind: "drop_default_guard", table, partition: def.name, leftover: true });
  return out;
}
