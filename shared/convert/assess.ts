// The preflight verdict: can this table be converted, and if not, exactly which objects are in the
// way and what to do about each. Pure: it decides from the catalog facts (facts.ts), the policy,
// the options and the recorded conversion. Every check adds to one list, in a fixed order, so the
// report reads the same on every run.
import { displayRelation } from "../db/relation.ts";
import { addIntervals, floorToInterval } from "../partitions/time.ts";
import { defaultBoundary } from "./boundary.ts";
import { type ConvertInput, isOurs, keyType, uniqueWithoutTime } from "./design.ts";
import type { ConversionState, ObjectRef, TableFacts } from "./facts.ts";
import { CONVERT_BOUND_CONSTRAINT, type ConvertNames, convertNames } from "./names.ts";

export interface Blocker {
  /** One line: what is wrong. */
  reason: string;
  /** The exact objects, ready to paste into psql. */
  objects: string[];
  /** What to do about it. */
  fix: string;
}

export interface Assessment {
  blockers: Blocker[];
  warnings: string[];
}

/** What every check reads, and where it writes. */
interface Check {
  facts: TableFacts;
  input: ConvertInput;
  state: ConversionState | null;
  /** The table in messages: `schema.name`. */
  name: string;
  names: ConvertNames;
  block(reason: string, objects: string[], fix: string): void;
  warn(warning: string): void;
}

export function assess(
  facts: TableFacts,
  input: ConvertInput,
  state: ConversionState | null,
  /** Names convert needs that other objects already have (existingRelations). */
  nameClashes: readonly string[] = [],
): Assessment {
  const verdict: Assessment = { blockers: [], warnings: [] };
  const check: Check = {
    facts,
    input,
    state,
    // Policy tables are plain lower-case identifiers: this is their `schema.name` as configured.
    name: displayRelation(facts.table),
    names: convertNames(facts.table.name),
    block: (reason, objects, fix) => verdict.blockers.push({ reason, objects, fix }),
    warn: (warning) => verdict.warnings.push(warning),
  };
  if (!checkKind(check)) return verdict;
  checkTable(check);
  checkTimeColumn(check);
  checkUniques(check);
  checkPrimaryKey(check);
  checkConstraintsAndIndexes(check);
  checkDependents(check);
  checkBoundaryRows(check);
  if (nameClashes.length > 0)
    check.block("names convert needs are taken by other objects", [...nameClashes], "rename or drop them");
  if (!facts.constraints.some((k) => k.type === "p"))
    check.warn("the table has no primary key; the partitioned table will have none either");
  return verdict;
}

/** An ordinary table that exists: false (after blocking) when nothing else is worth checking. */
function checkKind({ facts, name, block }: Check): boolean {
  if (!facts.exists) {
    block(`${name} does not exist`, [name], "check --table and the policy's table name");
    return false;
  }
  if (facts.relkind === "p") {
    block(
      `${name} is already partitioned`,
      [name],
      "nothing to convert; partition-manager manages it as it is",
    );
    return false;
  }
  if (facts.relkind !== "r") {
    block(
      `${name} is not an ordinary table (relkind ${facts.relkind})`,
      [name],
      "only plain tables can be converted",
    );
    return false;
  }
  return true;
}

function checkTable({ facts, name, block }: Check): void {
  if (facts.isPartition || facts.inheritance)
    block(
      `${name} takes part in table inheritance or partitioning`,
      [name],
      "detach it (NO INHERIT) first, or convert the parent",
    );
  if (facts.persistence !== "p")
    block(
      `${name} is ${facts.persistence === "u" ? "UNLOGGED" : "TEMPORARY"}`,
      [name],
      "ALTER TABLE ... SET LOGGED first",
    );
}

function checkTimeColumn({ facts, input, name, block }: Check): void {
  const column = input.policy.timeColumn;
  const time = facts.columns.find((c) => c.name === column);
  if (!time) {
    block(
      `column "${column}" does not exist`,
      [name],
      "set timeColumn in the policy to the table's time column",
    );
    return;
  }
  if (!keyType(facts, column))
    block(
      `column "${column}" is ${time.type}, not timestamptz or timestamp`,
      [`${name}.${column}`],
      "partitioning needs a timestamp column",
    );
  if (!time.notNull)
    block(
      `column "${column}" is not NOT NULL`,
      [`${name}.${column}`],
      "every row needs a time to have a partition: add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then ALTER COLUMN SET NOT NULL (PostgreSQL 12+ then skips the scan)",
    );
}

/** Unique constraints without the time column: refused unless --drop-unique accepts losing them. */
function checkUniques({ facts, input, state, names, block, warn }: Check): void {
  const lost = uniqueWithoutTime(facts, input.policy.timeColumn, names);
  const notAccepted = lost.filter((u) => !input.dropUnique.includes(u.name));
  if (notAccepted.length > 0)
    block(
      "unique constraints without the time column cannot exist on a partitioned table",
      notAccepted.map((u) => `${u.name}: ${u.definition}`),
      "pass --drop-unique NAME for each to accept that the partitioned table will not enforce it (the historical partition keeps it until finalize); " +
        "to keep deduplication, insert through a small dedupe table keyed by those columns (docs/runbooks/convert.md). " +
        "Check first that no INSERT ... ON CONFLICT names these columns: it fails once they are gone",
    );
  for (const u of lost.filter((x) => input.dropUnique.includes(x.name)))
    warn(
      `${u.name} (${u.definition}) will not be enforced on rows written after the swap; INSERT ... ON CONFLICT on it will fail`,
    );
  const unknownDrop = input.dropUnique.filter((n) => !lost.some((u) => u.name === n));
  const phase = state?.record?.phase;
  if (unknownDrop.length > 0 && phase !== "swapped" && phase !== "finalized")
    block(
      "--drop-unique names no unique constraint without the time column",
      unknownDrop,
      "use the names preflight lists",
    );
}

function checkPrimaryKey({ facts, input, block, warn }: Check): void {
  const time = input.policy.timeColumn;
  const pkc = facts.constraints.find((k) => k.type === "p");
  if (!pkc || pkc.columns.includes(time)) return;
  const key = [...pkc.columns, time].join(", ");
  if (/\bINCLUDE\b|\bDEFERRABLE\b/.test(pkc.definition))
    block(
      `the primary key lacks "${time}" and has INCLUDE or DEFERRABLE, which convert cannot carry into the new key`,
      [`${pkc.name}: ${pkc.definition}`],
      `make the key (${key}) yourself, or drop INCLUDE/DEFERRABLE first`,
    );
  const old = pkc.columns.join(", ");
  warn(
    `the primary key becomes (${key}): INSERT ... ON CONFLICT (${old}) fails after the swap, and ${old} alone is no longer unique across partitions`,
  );
}

function checkConstraintsAndIndexes({ facts, names, block }: Check): void {
  const exclusion = facts.constraints.filter((k) => k.type === "x");
  if (exclusion.length > 0)
    block(
      "exclusion constraints are not supported",
      exclusion.map((k) => k.name),
      "drop them first",
    );
  // connoinherit is also set on keys and foreign keys of plain tables; only CHECK and NOT NULL matter.
  const noInherit = facts.constraints.filter(
    (k) => (k.type === "c" || k.type === "n") && k.noInherit && k.name !== CONVERT_BOUND_CONSTRAINT,
  );
  if (noInherit.length > 0)
    block(
      "NO INHERIT constraints cannot exist on a partitioned table",
      noInherit.map((k) => `${k.name}: ${k.definition}`),
      "drop them, or re-create them without NO INHERIT",
    );
  const notValid = facts.constraints.filter((k) => !k.validated && k.name !== CONVERT_BOUND_CONSTRAINT);
  if (notValid.length > 0)
    block(
      "constraints that are NOT VALID",
      notValid.map((k) => `${k.name}: ${k.definition}`),
      "VALIDATE CONSTRAINT them first (it does not block writes)",
    );
  const invalidIndexes = facts.indexes.filter(
    (i) => !i.valid && !isOurs(i.name, names) && i.name !== names.ingestIndex,
  );
  if (invalidIndexes.length > 0)
    block(
      "invalid indexes (a failed CREATE INDEX CONCURRENTLY)",
      invalidIndexes.map((i) => i.name),
      "DROP INDEX CONCURRENTLY them, or REINDEX CONCURRENTLY",
    );
}

const refs = (xs: ObjectRef[]) => xs.map((x) => (x.detail ? `${x.name}: ${x.detail}` : x.name));

/** Objects that hang on the table and would not follow it (or would follow the wrong relation). */
function checkDependents({ facts, name, block }: Check): void {
  if (facts.incomingForeignKeys.length > 0)
    block(
      "other tables have foreign keys to this table (a partitioned table's key must include the time column, so they cannot stay)",
      refs(facts.incomingForeignKeys),
      "drop them (or point them at another table) before converting",
    );
  if (facts.dependentViews.length > 0)
    block(
      "views depend on this table",
      refs(facts.dependentViews),
      "drop them, convert, and create them again (their definitions: \\d+ VIEW in psql)",
    );
  if (facts.triggers.length > 0)
    block(
      "the table has triggers: after the swap they would fire only for rows routed to the historical partition",
      refs(facts.triggers),
      "drop them, convert, and create them on the partitioned table",
    );
  if (facts.rules.length > 0) block("the table has rules", refs(facts.rules), "drop them first");
  if (facts.publications.length > 0)
    block(
      "the table is published for logical replication",
      refs(facts.publications),
      "remove it from the publication; after the swap add the partitioned table with publish_via_partition_root",
    );
  if (facts.rowSecurity) block("row-level security is enabled", [name], "not supported by convert");
  const columnGrants = facts.columns.filter((c) => c.hasColumnGrants).map((c) => `${name}.${c.name}`);
  if (columnGrants.length > 0)
    block(
      "column-level privileges are not copied",
      columnGrants,
      "revoke them, convert, grant them again on the partitioned table",
    );
  if (facts.replicaIdentity !== "d")
    block(
      "a replica identity other than the default is set",
      [name],
      "ALTER TABLE ... REPLICA IDENTITY DEFAULT first, and set it again after the swap",
    );
}

/** Rows dated at or after the boundary cannot go into the historical partition. */
function checkBoundaryRows({ facts, input, state, name, block }: Check): void {
  if (facts.rowsAtOrAfterBoundary <= 0) return;
  const { policy } = input;
  const boundary = state?.record?.boundary ?? input.boundary ?? defaultBoundary(input.now, policy);
  const suggested = facts.maxTime
    ? addIntervals(floorToInterval(facts.maxTime, policy.interval), policy.interval, 1)
    : boundary;
  block(
    `${facts.rowsAtOrAfterBoundary} rows are at or after the boundary ${boundary.toISOString()} (latest ${facts.maxTime?.toISOString()}): they cannot go into the historical partition`,
    [name],
    state?.record && state.record.phase !== "reverted"
      ? `run \`migrate convert revert\`, then prepare again with --boundary ${suggested.toISOString()} (or later); or delete the future-dated rows`
      : `pass --boundary ${suggested.toISOString()} (or later), or delete the future-dated rows`,
  );
}
