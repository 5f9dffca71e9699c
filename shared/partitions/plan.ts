// The partition planner: a pure function of (policy, catalog snapshot, now). No database, no clock.
// It decides which children must exist (the current interval through `premake` ahead, holes between
// children, and intervals whose rows sit in the DEFAULT partition) and reports what it will not touch.
import type { TablePolicy } from "../config/policy.ts";
import { cutoffOrNone, isExpired } from "../retention/expiry.ts";
import type { Finding, Plan } from "../run/execute-plan.ts";
import type { TableCatalog } from "./catalog.ts";
import { partitionName } from "./naming.ts";
import { type ChildrenSeen, coveredBy, type RangedChild, readChildren } from "./plan-children.ts";
import { type GuardedRange, withDefaultGuard } from "./plan-guard.ts";
import { refuseLargeRescues } from "./plan-rescue.ts";
import { addIntervals, floorToInterval, type PartitionInterval } from "./time.ts";

export type CreateReason = "premake" | "gap" | "rescue";

export type PartitionAction =
  | { readonly kind: "create_default_partition"; readonly table: string; readonly partition: string }
  | {
      /** Proves `ranges` absent from the DEFAULT partition `partition` (plan-guard.ts). */
      readonly kind: "guard_default";
      readonly table: string;
      readonly partition: string;
      readonly ranges: readonly GuardedRange[];
    }
  | {
      readonly kind: "drop_default_guard";
      readonly table: string;
      readonly partition: string;
      /** True: a guard an earlier run left, dropped first; false: this run's own, dropped last. */
      readonly leftover: boolean;
    }
  | {
      readonly kind: "create_partition";
      readonly table: string;
      readonly partition: string;
      readonly from: Date;
      readonly to: Date;
      readonly reason: CreateReason;
      /** Rows of this range currently in DEFAULT, moved into the new child as part of its attach. */
      readonly defaultRows: number;
    };

export type PartitionFindingCode =
  | "misaligned_child"
  | "historical_child"
  | "unsupported_bound"
  | "range_conflict"
  | "name_conflict"
  | "default_rows_beyond_horizon"
  | "default_null_keys"
  | "detach_pending"
  | "gap_span_too_large"
  | "creation_capped"
  | "default_rows_expired"
  | "rescue_refused";

export type PartitionFinding = Finding<PartitionFindingCode>;

export interface PartitionPlan extends Plan<PartitionAction, PartitionFindingCode> {
  readonly table: string;
}

/** Gap filling walks interval by interval; beyond this many it reports instead (hourly over decades). */
export const MAX_GAP_SCAN_INTERVALS = 20_000;

/**
 * At most this many partitions are created per table and run. One DEFAULT row from a device whose
 * clock was never set (1970) would otherwise plan hundreds of historical partitions at once. The
 * most urgent ones (current, then future, then the newest history) go first; later runs continue,
 * and a finding names the oldest row so that an operator can decide.
 */
export const MAX_CREATES_PER_RUN = 120;

export function planPartitions(policy: TablePolicy, catalog: TableCatalog, now: Date): PartitionPlan {
  const table = policy.table;
  const findings: PartitionFinding[] = [];
  const { interval } = policy;
  const children = readChildren(table, catalog, interval, findings);

  const current = floorToInterval(now, interval);
  const horizon = addIntervals(current, interval, policy.premake); // start of the last premade interval
  const wanted = new Map<number, CreateReason>();
  for (let i = 0; i <= policy.premake; i++)
    wanted.set(addIntervals(current, interval, i).getTime(), "premake");

  // Never (re)create a partition that retention would remove: its range is wholly before the
  // retention cutoff. Expired DEFAULT rows stay where they are and retention deletes them; a
  // partition retention detached keeps its name, and re-creating the range would bring it back.
  // (Decided before the gap fill: one ancient DEFAULT row must not stretch the gap scan.)
  const cutoff = cutoffOrNone(policy, now);
  const expired = (start: number) =>
    cutoff !== undefined && isExpired(addIntervals(new Date(start), interval, 1), cutoff);
  const defaultRowsAt = rescueDefaultRows(policy, catalog, { horizon, cutoff, expired }, wanted, findings);
  fillGaps(children.ranged, interval, wanted, findings);
  // Gaps below the cutoff (between expired children retention has not removed yet) stay unfilled.
  for (const start of [...wanted.keys()]) if (expired(start)) wanted.delete(start);

  const creates = createActions(policy, catalog, children, wanted, defaultRowsAt, findings);
  const actions = refuseLargeRescues(policy, creates, findings);
  capCreates(actions, current, catalog, findings);
  strandedDefaultRows(children.ranged, actions, defaultRowsAt, horizon, interval, findings);
  const guarded = withDefaultGuard(table, catalog, actions, now);
  if (policy.defaultPartition && !catalog.defaultPartition) {
    guarded.push({
      kind: "create_default_partition",
      table,
      partition: defaultPartitionName(catalog.table.name),
    });
  }
  return { table, actions: guarded, findings };
}

/**
 * DEFAULT's rows by interval start, leaving out expired ones (reported, never partitioned); the
 * intervals up to the premake horizon that hold any are wanted, to be rescued.
 */
function rescueDefaultRows(
  policy: TablePolicy,
  catalog: TableCatalog,
  limits: { horizon: Date; cutoff: Date | undefined; expired: (start: number) => boolean },
  wanted: Map<number, CreateReason>,
  findings: PartitionFinding[],
): Map<number, number> {
  let expiredDefaultRows = 0;
  const defaultRowsAt = new Map<number, number>();
  for (const bucket of catalog.defaultBuckets) {
    const start = floorToInterval(bucket.start, policy.interval).getTime();
    if (limits.expired(start)) {
      expiredDefaultRows += bucket.rows;
      continue;
    }
    defaultRowsAt.set(start, (defaultRowsAt.get(start) ?? 0) + bucket.rows);
    if (start <= limits.horizon.getTime() && !wanted.has(start)) wanted.set(start, "rescue");
  }
  if (expiredDefaultRows > 0)
    findings.push({
      severity: "info",
      code: "default_rows_expired",
      message: `${expiredDefaultRows} rows in the DEFAULT partition are older than the retention cutoff ${limits.cutoff?.toISOString()}: no partition is made for them; retention deletes them`,
    });
  if (catalog.defaultNullKeyRows > 0) {
    findings.push({
      severity: "warn",
      code: "default_null_keys",
      message: `${catalog.defaultNullKeyRows} rows in the DEFAULT partition have a NULL ${policy.timeColumn}; no range partition can hold them`,
    });
  }
  return defaultRowsAt;
}

/**
 * Holes between the oldest and newest aligned intervals we know of are filled, so that every range
 * in between has a real partition (and nothing new lands in DEFAULT).
 */
function fillGaps(
  ranged: readonly RangedChild[],
  interval: PartitionInterval,
  wanted: Map<number, CreateReason>,
  findings: PartitionFinding[],
): void {
  const alignedStarts = ranged
    .filter(({ range }) => Number.isFinite(range.from) && Number.isFinite(range.to))
    .map(({ range }) => floorToInterval(new Date(range.from), interval).getTime());
  const allStarts = [...alignedStarts, ...wanted.keys()];
  const lowest = Math.min(...allStarts);
  const highest = Math.max(...allStarts);
  const gaps: number[] = [];
  let scanned = 0;
  for (let t = lowest; t <= highest; t = addIntervals(new Date(t), interval, 1).getTime()) {
    if (++scanned > MAX_GAP_SCAN_INTERVALS) break;
    if (!wanted.has(t)) gaps.push(t);
  }
  if (scanned > MAX_GAP_SCAN_INTERVALS) {
    findings.push({
      severity: "warn",
      code: "gap_span_too_large",
      message: `the partitions span more than ${MAX_GAP_SCAN_INTERVALS} ${interval} intervals (${new Date(lowest).toISOString()} to ${new Date(highest).toISOString()}); gaps were not filled`,
    });
  } else {
    for (const t of gaps) wanted.set(t, "gap");
  }
}

/** A create action per wanted interval that no child covers; overlaps and taken names are reported. */
function createActions(
  policy: TablePolicy,
  catalog: TableCatalog,
  children: ChildrenSeen,
  wanted: ReadonlyMap<number, CreateReason>,
  defaultRowsAt: ReadonlyMap<number, number>,
  findings: PartitionFinding[],
): PartitionAction[] {
  const actions: PartitionAction[] = [];
  const takenNames = new Map(catalog.children.map((c) => [c.name, c]));
  for (const [start, reason] of [...wanted].sort(([a], [b]) => a - b)) {
    const from = new Date(start);
    const to = addIntervals(from, policy.interval, 1);
    const overlapping = children.ranged.filter(({ range }) => range.from < to.getTime() && range.to > start);
    if (coveredBy(overlapping, children.historical, start, to.getTime())) continue;
    const name = partitionName(policy.naming, catalog.table.name, from);
    const span = `[${from.toISOString()}, ${to.toISOString()})`;
    if (overlapping.length > 0) {
      if (reason !== "gap" || defaultRowsAt.has(start)) {
        findings.push({
          severity: "warn",
          code: "range_conflict",
          partition: name,
          message: `cannot create ${name} ${span}: it overlaps ${overlapping.map((o) => o.child.name).join(", ")}`,
        });
      }
      continue;
    }
    const holder = takenNames.get(name);
    if (holder) {
      findings.push({
        severity: "warn",
        code: "name_conflict",
        partition: name,
        message: `cannot create ${span} as ${name}: that name is taken by a partition with ${holder.boundText}`,
      });
      continue;
    }
    const defaultRows = defaultRowsAt.get(start) ?? 0;
    actions.push({
      kind: "create_partition",
      table: policy.table,
      partition: name,
      from,
      to,
      reason,
      defaultRows,
    });
  }
  return actions;
}

/** The interval that receives today's rows comes first, then the future, then history; capped. */
function capCreates(
  actions: PartitionAction[],
  current: Date,
  catalog: TableCatalog,
  findings: PartitionFinding[],
): void {
  const currentMs = current.getTime();
  actions.sort((a, b) => rank(a, currentMs) - rank(b, currentMs));
  if (actions.length <= MAX_CREATES_PER_RUN) return;
  const deferred = actions.splice(MAX_CREATES_PER_RUN);
  const oldestDefault = catalog.defaultBuckets[0]?.start;
  findings.push({
    severity: "warn",
    code: "creation_capped",
    message:
      `${actions.length + deferred.length} partitions are needed; this run creates the ${MAX_CREATES_PER_RUN} most urgent and later runs continue` +
      (oldestDefault
        ? ` (the oldest row in DEFAULT is from ${oldestDefault.toISOString()}: if that is a bad device clock, delete it rather than partition back to it)`
        : ""),
  });
}

/** Rows in DEFAULT that no existing or planned partition will take (beyond the premake horizon). */
function strandedDefaultRows(
  ranged: readonly RangedChild[],
  actions: readonly PartitionAction[],
  defaultRowsAt: ReadonlyMap<number, number>,
  horizon: Date,
  interval: PartitionInterval,
  findings: PartitionFinding[],
): void {
  const takes = (start: number) =>
    ranged.some(({ range }) => range.from <= start && range.to > start) ||
    actions.some((a) => a.kind === "create_partition" && a.from.getTime() === start);
  const stranded = [...defaultRowsAt].filter(([start]) => start > horizon.getTime() && !takes(start));
  const strandedRows = stranded.reduce((n, [, rows]) => n + rows, 0);
  if (strandedRows > 0) {
    findings.push({
      severity: "warn",
      code: "default_rows_beyond_horizon",
      message: `${strandedRows} rows in the DEFAULT partition are dated after ${addIntervals(horizon, interval, 1).toISOString()} (beyond premake; device clock skew?); they stay there until their interval is premade`,
    });
  }
}

function rank(a: PartitionAction, currentMs: number): number {
  if (a.kind !== "create_partition") return Number.MAX_SAFE_INTEGER;
  const t = a.from.getTime();
  return t >= currentMs ? t - currentMs : Number.MAX_SAFE_INTEGER / 2 + (currentMs - t);
}

export function defaultPartitionName(table: string): string {
  return `${table.slice(0, 55)}_default`;
}
