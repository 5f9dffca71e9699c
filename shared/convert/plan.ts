// The pure planner of `migrate convert`: from the catalog facts (facts.ts) and the table's policy it
// decides whether the table can be converted (and why not), designs the conversion once, and turns
// the design plus the current state into the SQL of each phase. No I/O here: the executor
// (apply.ts) runs what this returns, and --dry-run prints it.
//
// The path (DESIGN.md section 5, docs/design/convert.md): prove the time range of the old table
// with a CHECK (NOT VALID, then VALIDATE: no write is blocked), build the unique index the new key
// needs CONCURRENTLY, create the new partitioned parent (not yet in use, so nothing waits on it) with
// its future partitions, then in one short transaction rename both and ATTACH the old table as the
// historical partition FROM (MINVALUE) TO (boundary). The valid CHECK lets ATTACH skip its scan, the
// prepared indexes and constraints let it adopt the old table's instead of building new ones.
import type { TablePolicy } from "../config/policy.ts";
import { boundLiteral } from "../partitions/bounds.ts";
import { DEFAULT_PARTITION_MARKER, partitionName } from "../partitions/naming.ts";
import { defaultPartitionName } from "../partitions/plan.ts";
import { addIntervals, floorToInterval, isAligned } from "../partitions/time.ts";
import { CHANGE_FUNCTION, CHANGE_TRIGGERS, changeTriggerStatement } from "../rollups/changes.ts";
import type { ChangeTriggerFacts, ConversionState, ObjectRef, OwnedSequence, TableFacts } from "./facts.ts";
import { quoteIdent as qi, quoteLiteral as ql } from "./facts.ts";
import {
  CONVERT_BOUND_CONSTRAINT,
  type ConvertNames,
  convertNames,
  HISTORY_COMMENT_PREFIX,
  historyIndexName,
  temporaryIndexName,
} from "./names.ts";

/** The column rollup-hourly finds new rows by. */
export const INGEST_COLUMN = "ingest_xid";

export interface ConvertInput {
  policy: TablePolicy;
  now: Date;
  /** --boundary: where the historical partition ends (an interval boundary). */
  boundary?: Date | undefined;
  /** --drop-unique: unique constraints/indexes without the time column the operator accepts to lose. */
  dropUnique: readonly string[];
}

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

/** An index the new parent gets, and the old table's index that matches it at ATTACH. */
export interface ParentIndex {
  /** The old table's index (after the swap: the parent's index has this name). */
  original: string;
  /** Parent's name until the swap. */
  temporary: string;
  /** Old table's index name once it is the historical partition. */
  history: string;
  /** "CREATE INDEX" text after the name, with {table} for the relation; empty for constraints. */
  body: string;
  /** A plain unique index (not a constraint) that includes the time column. */
  unique: boolean;
  /** Constraint the index backs on the parent: "p" primary key, "u" unique, null plain index. */
  constraint: "p" | "u" | null;
  /** The constraint's definition (INCLUDE, NULLS NOT DISTINCT, DEFERRABLE kept) unless the key changes. */
  constraintDef: string | null;
  columns: string[];
  /** The primary key whose columns change: the old constraint is dropped, not renamed. */
  replacesKey: boolean;
}

/** Decided once when prepare starts and stored with the conversion: swap, revert and finalize use it. */
export interface ConversionDesign {
  version: 1;
  schema: string;
  table: string;
  timeColumn: string;
  keyType: "timestamptz" | "timestamp";
  boundary: string;
  names: ConvertNames;
  primaryKey: { name: string; columns: string[]; newColumns: string[]; changes: boolean } | null;
  /** indexed: an index leads with the column, so max(column) is cheap under the swap's lock. */
  identity: { column: string; kind: "a" | "d"; indexed: boolean } | null;
  ownedSequences: OwnedSequence[];
  parentIndexes: ParentIndex[];
  /** Unique constraints/indexes without the time column: only the historical partition keeps them, until finalize. */
  keptOnHistory: { name: string; isConstraint: boolean }[];
  foreignKeys: { name: string; definition: string }[];
  grants: { grantee: string; privilege: string; grantable: boolean }[];
  owner: string;
  comment: string | null;
  partitions: { name: string; from: string; to: string }[];
  defaultPartition: string | null;
  /** Columns copied by revert (every stored, non-generated column). */
  columns: string[];
  addIngestColumn: boolean;
  buildIngestIndex: boolean;
}

export type StepKind = "transaction" | "concurrently";

export interface Statement {
  sql: string;
  /** The statement must affect exactly this many rows, or the step rolls back (state guards). */
  expectRows?: number;
  /** What a guard's failure means, for the error message. */
  guard?: string;
}

export interface Step {
  id: string;
  title: string;
  /** What it locks, and for how long, in words (printed with --dry-run and in the runbook). */
  locks: string;
  kind: StepKind;
  statements: Statement[];
  /** Long steps report progress while they run. */
  progress?: { kind: "index"; index: string } | { kind: "validate" };
}

// ---------------------------------------------------------------------------------------------
// Boundary

/** The default boundary is never closer than this (hourly and daily tables). */
export const MIN_BOUNDARY_MARGIN_MS = 24 * 3_600_000;

/**
 * The historical partition's upper bound: the first interval boundary at least half an interval
 * (and at least a day) after now. From prepare's CHECK step until the swap, the NOT VALID CHECK
 * rejects rows at or after it, so it must not be close: a monthly table converted on the 30th gets
 * the end of next month, an hourly one a boundary a day ahead.
 */
export function defaultBoundary(now: Date, policy: Pick<TablePolicy, "interval">): Date {
  const start = floorToInterval(now, policy.interval);
  const next = addIntervals(start, policy.interval, 1);
  const margin = Math.max((next.getTime() - start.getTime()) / 2, MIN_BOUNDARY_MARGIN_MS);
  let b = next;
  while (b.getTime() - now.getTime() < margin) b = addIntervals(b, policy.interval, 1);
  return b;
}

export function boundaryProblem(
  boundary: Date,
  now: Date,
  policy: Pick<TablePolicy, "interval">,
): string | null {
  if (!isAligned(boundary, policy.interval))
    return `--boundary ${boundary.toISOString()} is not the start of a ${policy.interval} interval (UTC); the new partitions start there`;
  if (boundary.getTime() <= now.getTime())
    return `--boundary ${boundary.toISOString()} is not in the future: rows written now would be rejected by the CHECK before the swap`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Preflight verdict

function keyType(facts: TableFacts, timeColumn: string): "timestamptz" | "timestamp" | null {
  // Without the precision: timestamp(3) partitions like timestamp.
  const t = facts.columns.find((c) => c.name === timeColumn)?.type.replace(/\(\d+\)/, "");
  if (t === "timestamp with time zone") return "timestamptz";
  if (t === "timestamp without time zone") return "timestamp";
  return null;
}

/** Our own objects from an earlier (interrupted) prepare are not the user's and never block. */
function isOurs(name: string, names: ConvertNames): boolean {
  return name === names.newKeyIndex || name === names.oldKeyIndex || name === CONVERT_BOUND_CONSTRAINT;
}

function uniqueWithoutTime(facts: TableFacts, timeColumn: string, names: ConvertNames) {
  const out: { name: string; isConstraint: boolean; definition: string }[] = [];
  for (const k of facts.constraints) {
    if (k.type === "u" && !k.columns.includes(timeColumn))
      out.push({ name: k.name, isConstraint: true, definition: k.definition });
  }
  for (const i of facts.indexes) {
    if (i.unique && !i.constraintName && !isOurs(i.name, names) && !i.columns.includes(timeColumn))
      out.push({ name: i.name, isConstraint: false, definition: i.definition });
  }
  return out;
}

export function assess(
  facts: TableFacts,
  input: ConvertInput,
  state: ConversionState | null,
  /** Names convert needs that other objects already have (existingRelations). */
  nameClashes: readonly string[] = [],
): Assessment {
  const { policy } = input;
  const name = `${facts.table.schema}.${facts.table.name}`;
  const names = convertNames(facts.table.name);
  const blockers: Blocker[] = [];
  const warnings: string[] = [];
  const block = (reason: string, objects: string[], fix: string) => blockers.push({ reason, objects, fix });

  if (!facts.exists) {
    block(`${name} does not exist`, [name], "check --table and the policy's table name");
    return { blockers, warnings };
  }
  if (facts.relkind === "p") {
    block(
      `${name} is already partitioned`,
      [name],
      "nothing to convert; partition-manager manages it as it is",
    );
    return { blockers, warnings };
  }
  if (facts.relkind !== "r") {
    block(
      `${name} is not an ordinary table (relkind ${facts.relkind})`,
      [name],
      "only plain tables can be converted",
    );
    return { blockers, warnings };
  }
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

  const time = facts.columns.find((c) => c.name === policy.timeColumn);
  if (!time) {
    block(
      `column "${policy.timeColumn}" does not exist`,
      [name],
      "set timeColumn in the policy to the table's time column",
    );
  } else {
    if (!keyType(facts, policy.timeColumn))
      block(
        `column "${policy.timeColumn}" is ${time.type}, not timestamptz or timestamp`,
        [`${name}.${policy.timeColumn}`],
        "partitioning needs a timestamp column",
      );
    if (!time.notNull)
      block(
        `column "${policy.timeColumn}" is not NOT NULL`,
        [`${name}.${policy.timeColumn}`],
        "every row needs a time to have a partition: add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then ALTER COLUMN SET NOT NULL (PostgreSQL 12+ then skips the scan)",
      );
  }

  const lost = uniqueWithoutTime(facts, policy.timeColumn, names);
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
    warnings.push(
      `${u.name} (${u.definition}) will not be enforced on rows written after the swap; INSERT ... ON CONFLICT on it will fail`,
    );
  const unknownDrop = input.dropUnique.filter((n) => !lost.some((u) => u.name === n));
  if (unknownDrop.length > 0 && state?.record?.phase !== "swapped" && state?.record?.phase !== "finalized")
    block(
      "--drop-unique names no unique constraint without the time column",
      unknownDrop,
      "use the names preflight lists",
    );

  const pkc = facts.constraints.find((k) => k.type === "p");
  if (pkc && !pkc.columns.includes(policy.timeColumn) && /\bINCLUDE\b|\bDEFERRABLE\b/.test(pkc.definition))
    block(
      `the primary key lacks "${policy.timeColumn}" and has INCLUDE or DEFERRABLE, which convert cannot carry into the new key`,
      [`${pkc.name}: ${pkc.definition}`],
      `make the key (${[...pkc.columns, policy.timeColumn].join(", ")}) yourself, or drop INCLUDE/DEFERRABLE first`,
    );
  if (pkc && !pkc.columns.includes(policy.timeColumn))
    warnings.push(
      `the primary key becomes (${[...pkc.columns, policy.timeColumn].join(", ")}): INSERT ... ON CONFLICT (${pkc.columns.join(", ")}) fails after the swap, and ${pkc.columns.join(", ")} alone is no longer unique across partitions`,
    );
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

  const refs = (xs: ObjectRef[]) => xs.map((x) => (x.detail ? `${x.name}: ${x.detail}` : x.name));
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

  const boundary = state?.record?.boundary ?? input.boundary ?? defaultBoundary(input.now, policy);
  if (facts.rowsAtOrAfterBoundary > 0) {
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
  if (nameClashes.length > 0)
    block("names convert needs are taken by other objects", [...nameClashes], "rename or drop them");
  if (!facts.constraints.some((k) => k.type === "p"))
    warnings.push("the table has no primary key; the partitioned table will have none either");
  return { blockers, warnings };
}

// ---------------------------------------------------------------------------------------------
// Design

export function design(facts: TableFacts, input: ConvertInput): ConversionDesign {
  const { policy } = input;
  const { schema, name: table } = facts.table;
  const names = convertNames(table);
  const time = policy.timeColumn;
  const boundary = input.boundary ?? defaultBoundary(input.now, policy);
  const type = keyType(facts, time) ?? "timestamptz";

  const pk = facts.constraints.find((k) => k.type === "p");
  const primaryKey = pk
    ? {
        name: pk.name,
        columns: pk.columns,
        newColumns: pk.columns.includes(time) ? pk.columns : [...pk.columns, time],
        changes: !pk.columns.includes(time),
      }
    : null;

  const parentIndexes: ParentIndex[] = [];
  if (pk && primaryKey) {
    parentIndexes.push({
      original: pk.indexName ?? pk.name,
      temporary: temporaryIndexName(pk.indexName ?? pk.name),
      history: historyIndexName(pk.indexName ?? pk.name),
      body: "",
      unique: true,
      constraint: "p",
      constraintDef: primaryKey.changes ? null : pk.definition,
      columns: primaryKey.newColumns,
      replacesKey: primaryKey.changes,
    });
  }
  for (const k of facts.constraints) {
    if (k.type !== "u" || !k.columns.includes(time)) continue;
    const index = k.indexName ?? k.name;
    parentIndexes.push({
      original: index,
      temporary: temporaryIndexName(index),
      history: historyIndexName(index),
      body: "",
      unique: true,
      constraint: "u",
      constraintDef: k.definition,
      columns: k.columns,
      replacesKey: false,
    });
  }
  const hasIngestIndex = facts.indexes.some(
    (i) => i.valid && i.columns[0] === INGEST_COLUMN && i.body.startsWith(" USING btree (ingest_xid"),
  );
  for (const i of facts.indexes) {
    if (i.constraintName || isOurs(i.name, names)) continue;
    if (i.unique && !i.columns.includes(time)) continue; // kept on history only (--drop-unique)
    parentIndexes.push({
      original: i.name,
      temporary: temporaryIndexName(i.name),
      history: historyIndexName(i.name),
      body: i.body,
      unique: i.unique,
      constraint: null,
      constraintDef: null,
      columns: i.columns,
      replacesKey: false,
    });
  }
  const wantsIngest = policy.rollup !== undefined;
  const buildIngestIndex = wantsIngest && !hasIngestIndex;
  if (buildIngestIndex) {
    parentIndexes.push({
      original: names.ingestIndex,
      temporary: temporaryIndexName(names.ingestIndex),
      history: historyIndexName(names.ingestIndex),
      body: ` USING btree (${qi(INGEST_COLUMN)}, ${qi(time)})`,
      unique: false,
      constraint: null,
      constraintDef: null,
      columns: [INGEST_COLUMN, time],
      replacesKey: false,
    });
  }

  const identityColumn = facts.columns.find((c) => c.identity !== "");
  const addIngestColumn = wantsIngest && !facts.columns.some((c) => c.name === INGEST_COLUMN);
  const columns = facts.columns.filter((c) => !c.generated).map((c) => c.name);
  if (addIngestColumn) columns.push(INGEST_COLUMN);

  const partitions: ConversionDesign["partitions"] = [];
  const horizon = addIntervals(
    floorToInterval(input.now, policy.interval),
    policy.interval,
    policy.premake + 1,
  );
  for (let from = boundary; partitions.length === 0 || from.getTime() < horizon.getTime(); ) {
    const to = addIntervals(from, policy.interval, 1);
    partitions.push({
      name: partitionName(policy.naming, table, from),
      from: from.toISOString(),
      to: to.toISOString(),
    });
    from = to;
  }

  return {
    version: 1,
    schema,
    table,
    timeColumn: time,
    keyType: type,
    boundary: boundary.toISOString(),
    names,
    primaryKey,
    identity: identityColumn
      ? {
          column: identityColumn.name,
          kind: identityColumn.identity as "a" | "d",
          indexed: facts.indexes.some((i) => i.valid && i.columns[0] === identityColumn.name),
        }
      : null,
    ownedSequences: facts.ownedSequences,
    parentIndexes,
    keptOnHistory: uniqueWithoutTime(facts, time, names).map(({ name, isConstraint }) => ({
      name,
      isConstraint,
    })),
    foreignKeys: facts.constraints
      .filter((k) => k.type === "f")
      .map((k) => ({ name: k.name, definition: k.definition })),
    grants: facts.grants,
    owner: facts.owner,
    comment: facts.comment,
    partitions,
    defaultPartition: policy.defaultPartition ? defaultPartitionName(table) : null,
    columns,
    addIngestColumn,
    buildIngestIndex,
  };
}

/** Every name the conversion will create; any that exists already (and is not ours) is a clash. */
export function namesToCreate(d: ConversionDesign): string[] {
  return [
    d.names.parent,
    d.names.history,
    ...(d.primaryKey?.changes ? [d.names.newKeyIndex, d.names.oldKeyIndex] : []),
    ...d.parentIndexes.flatMap((i) => [i.temporary, i.history]),
    ...d.partitions.map((p) => p.name),
    ...(d.defaultPartition ? [d.defaultPartition] : []),
  ];
}

// ---------------------------------------------------------------------------------------------
// SQL of each phase

const rel = (d: ConversionDesign, name: string) => `${qi(d.schema)}.${qi(name)}`;
const bound = (d: ConversionDesign, iso: string) => ql(boundLiteral(new Date(iso), d.keyType));
const conversionsRow = (d: ConversionDesign) => `table_name = ${ql(`${d.schema}.${d.table}`)}`;

/**
 * Moves the recorded phase. It must change exactly one row, or the step rolls back: the guard
 * against running a phase from the wrong state, or twice at once (the row lock serialises them).
 */
function phaseUpdate(d: ConversionDesign, to: string, from: readonly string[]): Statement {
  const where = from.length === 1 ? `= ${ql(from[0]!)}` : `IN (${from.map(ql).join(", ")})`;
  return {
    sql: `UPDATE telemetry_jobs.conversions SET phase = ${ql(to)}, updated_at = now() WHERE ${conversionsRow(d)} AND phase ${where}`,
    expectRows: 1,
  };
}

function markPhaseStep(
  d: ConversionDesign,
  id: string,
  title: string,
  to: string,
  from: readonly string[],
): Step {
  return {
    id,
    title,
    locks: "none on the table",
    kind: "transaction",
    statements: [phaseUpdate(d, to, from)],
  };
}

export function recordStep(d: ConversionDesign): Step {
  return {
    id: "record",
    title: "record the conversion and its design (telemetry_jobs.conversions)",
    locks: "none on the table",
    kind: "transaction",
    statements: [
      {
        sql: `INSERT INTO telemetry_jobs.conversions (table_name, phase, boundary, plan)
VALUES (${ql(`${d.schema}.${d.table}`)}, 'preparing', ${ql(d.boundary)}, ${ql(JSON.stringify(d))}::jsonb)
ON CONFLICT (table_name) DO UPDATE SET phase = 'preparing', boundary = EXCLUDED.boundary, plan = EXCLUDED.plan,
  started_at = now(), updated_at = now()
WHERE conversions.phase = 'reverted'`,
        expectRows: 1,
      },
    ],
  };
}

export interface PrepareState {
  hasIngestColumn: boolean;
  boundCheck: ConversionState["boundCheck"];
  builtIndexes: ConversionState["builtIndexes"];
  parentExists: boolean;
}

export function prepareSteps(d: ConversionDesign, s: PrepareState): Step[] {
  const t = rel(d, d.table);
  const steps: Step[] = [];
  if (d.addIngestColumn && !s.hasIngestColumn) {
    steps.push({
      id: "ingest-column",
      title: `add ${INGEST_COLUMN} for rollup-hourly (catalog only: a nullable column, then its default)`,
      locks: "ACCESS EXCLUSIVE on the table for a few milliseconds, under lock_timeout",
      kind: "transaction",
      statements: [
        { sql: `ALTER TABLE ${t} ADD COLUMN ${qi(INGEST_COLUMN)} xid8` },
        { sql: `ALTER TABLE ${t} ALTER COLUMN ${qi(INGEST_COLUMN)} SET DEFAULT pg_current_xact_id()` },
      ],
    });
  }
  const builds: { name: string; columns: string[]; unique: boolean }[] = [];
  if (d.primaryKey?.changes) {
    builds.push({ name: d.names.newKeyIndex, columns: d.primaryKey.newColumns, unique: true });
    builds.push({ name: d.names.oldKeyIndex, columns: d.primaryKey.columns, unique: true });
  }
  if (d.buildIngestIndex)
    builds.push({ name: d.names.ingestIndex, columns: [INGEST_COLUMN, d.timeColumn], unique: false });
  for (const b of builds) {
    const state = s.builtIndexes[b.name] ?? "absent";
    if (state === "valid") continue;
    const statements: Statement[] = [];
    if (state === "invalid") statements.push({ sql: `DROP INDEX CONCURRENTLY IF EXISTS ${rel(d, b.name)}` });
    statements.push({
      sql: `CREATE ${b.unique ? "UNIQUE " : ""}INDEX CONCURRENTLY ${qi(b.name)} ON ${t} (${b.columns.map(qi).join(", ")})`,
    });
    steps.push({
      id: `index:${b.name}`,
      title: `${state === "invalid" ? "rebuild the interrupted" : "build"} ${b.unique ? "unique " : ""}index ${b.name} (${b.columns.join(", ")}) CONCURRENTLY`,
      locks:
        "SHARE UPDATE EXCLUSIVE on the table (writes go on); waits for transactions older than the build",
      kind: "concurrently",
      statements,
      progress: { kind: "index", index: b.name },
    });
  }
  if (!s.parentExists) steps.push(parentStep(d));
  // The CHECK comes last: from the moment it exists until the swap, rows at or after the boundary
  // are rejected, so that window holds only VALIDATE and the swap, not the index builds.
  if (s.boundCheck === "absent") {
    steps.push({
      id: "check",
      title: `add CHECK (${d.timeColumn} < ${d.boundary}) NOT VALID: new rows are checked, old ones not yet`,
      locks: "ACCESS EXCLUSIVE on the table for a few milliseconds, under lock_timeout",
      kind: "transaction",
      statements: [
        {
          sql: `ALTER TABLE ${t} ADD CONSTRAINT ${qi(CONVERT_BOUND_CONSTRAINT)} CHECK (${qi(d.timeColumn)} IS NOT NULL AND ${qi(d.timeColumn)} < ${bound(d, d.boundary)}) NOT VALID`,
        },
      ],
    });
  }
  if (s.boundCheck !== "valid") {
    steps.push({
      id: "validate",
      title: "VALIDATE the CHECK: one scan of the table, reads and writes go on",
      locks:
        "SHARE UPDATE EXCLUSIVE on the table for the whole scan (blocks only DDL, VACUUM and other validations)",
      kind: "transaction",
      statements: [{ sql: `ALTER TABLE ${t} VALIDATE CONSTRAINT ${qi(CONVERT_BOUND_CONSTRAINT)}` }],
      progress: { kind: "validate" },
    });
  }
  steps.push(
    markPhaseStep(d, "prepared", "mark the conversion prepared", "prepared", ["preparing", "prepared"]),
  );
  return steps;
}

function parentStep(d: ConversionDesign): Step {
  const t = rel(d, d.table);
  const p = rel(d, d.names.parent);
  const sqls: string[] = [
    `CREATE TABLE ${p} (LIKE ${t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS) PARTITION BY RANGE (${qi(d.timeColumn)})`,
    // LIKE copied our CHECK too; the parent's partitions have their own bounds.
    `ALTER TABLE ${p} DROP CONSTRAINT IF EXISTS ${qi(CONVERT_BOUND_CONSTRAINT)}`,
  ];
  for (const i of d.parentIndexes) {
    if (i.constraintDef) sqls.push(`ALTER TABLE ${p} ADD CONSTRAINT ${qi(i.temporary)} ${i.constraintDef}`);
    else if (i.constraint === "p")
      sqls.push(
        `ALTER TABLE ${p} ADD CONSTRAINT ${qi(i.temporary)} PRIMARY KEY (${i.columns.map(qi).join(", ")})`,
      );
    else if (i.constraint === "u")
      sqls.push(
        `ALTER TABLE ${p} ADD CONSTRAINT ${qi(i.temporary)} UNIQUE (${i.columns.map(qi).join(", ")})`,
      );
    else sqls.push(`CREATE ${i.unique ? "UNIQUE " : ""}INDEX ${qi(i.temporary)} ON ${p}${i.body}`);
  }
  for (const fk of d.foreignKeys)
    sqls.push(`ALTER TABLE ${p} ADD CONSTRAINT ${qi(fk.name)} ${fk.definition}`);
  if (d.comment !== null) sqls.push(`COMMENT ON TABLE ${p} IS ${ql(d.comment)}`);
  sqls.push(`ALTER TABLE ${p} OWNER TO ${qi(d.owner)}`);
  for (const g of d.grants)
    sqls.push(
      `GRANT ${g.privilege} ON ${p} TO ${g.grantee === "PUBLIC" ? "PUBLIC" : g.grantee}${g.grantable ? " WITH GRANT OPTION" : ""}`,
    );
  for (const part of d.partitions)
    sqls.push(
      `CREATE TABLE ${rel(d, part.name)} PARTITION OF ${p} FOR VALUES FROM (${bound(d, part.from)}) TO (${bound(d, part.to)})`,
    );
  if (d.defaultPartition) {
    sqls.push(`CREATE TABLE ${rel(d, d.defaultPartition)} PARTITION OF ${p} DEFAULT`);
    sqls.push(`COMMENT ON TABLE ${rel(d, d.defaultPartition)} IS ${ql(DEFAULT_PARTITION_MARKER)}`);
  }
  return {
    id: "parent",
    title: `create the partitioned parent ${d.names.parent} (unused until the swap) with ${d.partitions.length} partitions from ${d.boundary}`,
    locks:
      "nothing the application uses; foreign keys take SHARE ROW EXCLUSIVE on the referenced tables for a moment, under lock_timeout",
    kind: "transaction",
    statements: sqls.map((sql) => ({ sql })),
  };
}

/**
 * next value of `target` := past the `source` sequence's position and, when an index makes it cheap
 * (this runs under ACCESS EXCLUSIVE), past every id in `table` (ids inserted with explicit values).
 */
function continueSequence(
  targetSeq: string,
  sourceSeq: string,
  table: string,
  identity: { column: string; indexed: boolean },
): string {
  const largest = identity.indexed ? `(SELECT coalesce(max(${qi(identity.column)}), 0) FROM ${table})` : "0";
  return `SELECT setval(${targetSeq}, greatest(v, 1), v >= 1) FROM (SELECT greatest(coalesce(pg_sequence_last_value(${sourceSeq}::regclass), 0), ${largest}) AS v) AS last`;
}

const TRIGGER_STATE = { O: null, D: "DISABLE", R: "ENABLE REPLICA", A: "ENABLE ALWAYS" } as const;

/**
 * rollup-hourly's change triggers as found on the table, created on the relation `name` with the
 * same definition (rollup-hourly's own statement, shared/rollups/changes.ts) and the same
 * arguments, and left disabled (or replica-only) as they were.
 */
function createChangeTriggers(
  d: ConversionDesign,
  name: string,
  triggers: readonly ChangeTriggerFacts[],
): Statement[] {
  const out: Statement[] = [];
  for (const found of triggers) {
    const trigger = CHANGE_TRIGGERS.find((c) => c.name === found.name);
    if (!trigger) continue;
    out.push({ sql: changeTriggerStatement({ schema: d.schema, name }, trigger, found.args) });
    const state = TRIGGER_STATE[found.enabled];
    if (state) out.push({ sql: `ALTER TABLE ${rel(d, name)} ${state} TRIGGER ${qi(found.name)}` });
  }
  return out;
}

/**
 * Guard: rollup-hourly's change triggers on the relation `name` are still exactly `triggers` (names,
 * enabled state, arguments; the function is theirs). They were read before the step's lock; run
 * after it, this sees the catalog the step changes. rollup-hourly may have installed them in
 * between: the step then rolls back, and the same command again reads them anew.
 */
function changeTriggersGuard(
  d: ConversionDesign,
  name: string,
  triggers: readonly ChangeTriggerFacts[],
): Statement {
  const hex = (args: readonly string[]) =>
    Buffer.concat(args.flatMap((a) => [Buffer.from(a, "utf8"), Buffer.from([0])])).toString("hex");
  const expected = [...triggers]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((t) => `${t.name}/${t.enabled}/t/${hex(t.args)}`)
    .join(" ");
  const fn = ql(`${qi(CHANGE_FUNCTION.schema)}.${qi(CHANGE_FUNCTION.name)}()`);
  const names = CHANGE_TRIGGERS.map((c) => ql(c.name)).join(", ");
  return {
    sql: `SELECT 1 WHERE (SELECT coalesce(string_agg(t.tgname::text || '/' || t.tgenabled::text || '/' || CASE WHEN t.tgfoid = to_regprocedure(${fn}) THEN 't' ELSE 'f' END || '/' || encode(t.tgargs, 'hex'), ' ' ORDER BY t.tgname::text COLLATE "C"), '') FROM pg_catalog.pg_trigger t WHERE t.tgrelid = ${ql(rel(d, name))}::regclass AND t.tgname IN (${names})) = ${ql(expected)}`,
    expectRows: 1,
    guard: `rollup-hourly's change triggers on ${d.schema}.${name} changed since they were read (expected: ${triggers.map((t) => t.name).join(", ") || "none"}); run the same command again`,
  };
}

/**
 * The swap. `changeTriggers`: rollup-hourly's change triggers on the table, read when the swap
 * runs; they move to the partitioned parent in the same transaction (a statement trigger on the
 * historical partition would see only statements naming that partition), so every UPDATE and
 * DELETE through the table's name is recorded before, during and after the swap.
 */
export function swapStep(d: ConversionDesign, changeTriggers: readonly ChangeTriggerFacts[] = []): Step {
  const t = rel(d, d.table);
  const p = rel(d, d.names.parent);
  const h = rel(d, d.names.history);
  const sqls: Statement[] = [
    { sql: `LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE` },
    phaseUpdate(d, "swapped", ["prepared"]),
  ];
  if (d.identity) {
    const c = d.identity.column;
    sqls.push({
      sql: continueSequence(
        `pg_get_serial_sequence(${ql(p)}, ${ql(c)})`,
        `pg_get_serial_sequence(${ql(t)}, ${ql(c)})`,
        t,
        d.identity,
      ),
    });
    // PostgreSQL 17+ refuses to attach a table with an identity column; before 17 the parent's
    // identity would not be used for rows inserted through the parent. The parent owns it now.
    sqls.push({ sql: `ALTER TABLE ${t} ALTER COLUMN ${qi(c)} DROP IDENTITY` });
  }
  for (const s of d.ownedSequences)
    sqls.push({ sql: `ALTER SEQUENCE ${s.sequence} OWNED BY ${p}.${qi(s.column)}` });
  sqls.push(changeTriggersGuard(d, d.table, changeTriggers));
  for (const tg of changeTriggers) sqls.push({ sql: `DROP TRIGGER ${qi(tg.name)} ON ${t}` });
  for (const i of d.parentIndexes) {
    if (i.replacesKey && d.primaryKey) {
      sqls.push({ sql: `ALTER TABLE ${t} DROP CONSTRAINT ${qi(d.primaryKey.name)}` });
      sqls.push({
        sql: `ALTER TABLE ${t} ADD CONSTRAINT ${qi(i.history)} PRIMARY KEY USING INDEX ${qi(d.names.newKeyIndex)}`,
      });
    } else {
      sqls.push({ sql: `ALTER INDEX ${rel(d, i.original)} RENAME TO ${qi(i.history)}` });
    }
    sqls.push({ sql: `ALTER INDEX ${rel(d, i.temporary)} RENAME TO ${qi(i.original)}` });
  }
  sqls.push({ sql: `ALTER TABLE ${t} RENAME TO ${qi(d.names.history)}` });
  sqls.push({ sql: `ALTER TABLE ${p} RENAME TO ${qi(d.table)}` });
  sqls.push(...createChangeTriggers(d, d.table, changeTriggers));
  sqls.push({
    sql: `COMMENT ON TABLE ${h} IS ${ql(`${HISTORY_COMMENT_PREFIX} historical partition of ${d.schema}.${d.table} (rows before ${d.boundary}); retention drops it whole once ${d.boundary} is past the cutoff`)}`,
  });
  sqls.push({
    sql: `ALTER TABLE ${t} ATTACH PARTITION ${h} FOR VALUES FROM (MINVALUE) TO (${bound(d, d.boundary)})`,
  });
  return {
    id: "swap",
    title: `rename ${d.table} to ${d.names.history}, ${d.names.parent} to ${d.table}, and attach the old table as the partition FROM (MINVALUE) TO (${d.boundary})`,
    locks:
      "ACCESS EXCLUSIVE on the table for one short transaction (catalog changes only), under lock_timeout, retried",
    kind: "transaction",
    statements: sqls,
  };
}

/**
 * `columns`: read from the catalog when revert runs (a column added since the swap is copied too).
 * `changeTriggers`: rollup-hourly's change triggers on the partitioned table, read when revert
 * runs; the plain table gets them back in the same transaction (they go with the partitioned table).
 */
export function revertStep(
  d: ConversionDesign,
  columns: readonly string[] = d.columns,
  changeTriggers: readonly ChangeTriggerFacts[] = [],
): Step {
  const t = rel(d, d.table);
  const h = rel(d, d.names.history);
  const cols = columns.map(qi).join(", ");
  const sqls: Statement[] = [
    { sql: `LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE` },
    phaseUpdate(d, "reverted", ["swapped"]),
    { sql: `ALTER TABLE ${t} DETACH PARTITION ${h}` },
    { sql: `ALTER TABLE ${h} DROP CONSTRAINT ${qi(CONVERT_BOUND_CONSTRAINT)}` },
    // Rows written since the swap into the new partitions (and DEFAULT) go back into the one table.
    { sql: `INSERT INTO ${h} (${cols}) SELECT ${cols} FROM ${t}` },
  ];
  if (d.identity) {
    const c = d.identity.column;
    sqls.push({
      sql: `ALTER TABLE ${h} ALTER COLUMN ${qi(c)} ADD GENERATED ${d.identity.kind === "a" ? "ALWAYS" : "BY DEFAULT"} AS IDENTITY`,
    });
    sqls.push({
      sql: continueSequence(
        `pg_get_serial_sequence(${ql(h)}, ${ql(c)})`,
        `pg_get_serial_sequence(${ql(t)}, ${ql(c)})`,
        h,
        d.identity,
      ),
    });
  }
  for (const s of d.ownedSequences)
    sqls.push({ sql: `ALTER SEQUENCE ${s.sequence} OWNED BY ${h}.${qi(s.column)}` });
  sqls.push(changeTriggersGuard(d, d.table, changeTriggers));
  sqls.push({ sql: `DROP TABLE ${t}` });
  for (const i of d.parentIndexes) {
    if (i.replacesKey && d.primaryKey) {
      sqls.push({ sql: `ALTER TABLE ${h} DROP CONSTRAINT ${qi(i.history)}` });
      sqls.push({
        sql: `ALTER TABLE ${h} ADD CONSTRAINT ${qi(d.primaryKey.name)} PRIMARY KEY USING INDEX ${qi(d.names.oldKeyIndex)}`,
      });
    } else {
      sqls.push({ sql: `ALTER INDEX ${rel(d, i.history)} RENAME TO ${qi(i.original)}` });
    }
  }
  sqls.push({ sql: `ALTER TABLE ${h} RENAME TO ${qi(d.table)}` });
  sqls.push(...createChangeTriggers(d, d.table, changeTriggers));
  sqls.push({ sql: `COMMENT ON TABLE ${t} IS ${d.comment === null ? "NULL" : ql(d.comment)}` });
  return {
    id: "revert",
    title: `detach ${d.names.history}, copy the rows written since the swap into it, drop the partitioned table, and rename it back to ${d.table}`,
    locks:
      "ACCESS EXCLUSIVE on the table for one transaction, under lock_timeout, retried; it lasts as long as copying the rows written since the swap",
    kind: "transaction",
    statements: sqls,
  };
}

export function finalizeSteps(d: ConversionDesign, present: ReadonlySet<string>): Step[] {
  const h = rel(d, d.names.history);
  const steps: Step[] = [];
  for (const k of d.keptOnHistory) {
    if (!present.has(k.name)) continue;
    steps.push(
      k.isConstraint
        ? {
            id: `drop:${k.name}`,
            title: `drop ${k.name} from the historical partition (the partitioned table does not enforce it)`,
            locks: "ACCESS EXCLUSIVE on the historical partition for a moment, under lock_timeout",
            kind: "transaction",
            statements: [{ sql: `ALTER TABLE ${h} DROP CONSTRAINT IF EXISTS ${qi(k.name)}` }],
          }
        : {
            id: `drop:${k.name}`,
            title: `drop index ${k.name} from the historical partition`,
            locks: "SHARE UPDATE EXCLUSIVE (CONCURRENTLY): writes go on",
            kind: "concurrently",
            statements: [{ sql: `DROP INDEX CONCURRENTLY IF EXISTS ${rel(d, k.name)}` }],
          },
    );
  }
  if (d.primaryKey?.changes && present.has(d.names.oldKeyIndex)) {
    steps.push({
      id: `drop:${d.names.oldKeyIndex}`,
      title: `drop ${d.names.oldKeyIndex} (the old key, kept for revert)`,
      locks: "SHARE UPDATE EXCLUSIVE (CONCURRENTLY): writes go on",
      kind: "concurrently",
      statements: [{ sql: `DROP INDEX CONCURRENTLY IF EXISTS ${rel(d, d.names.oldKeyIndex)}` }],
    });
  }
  steps.push(
    markPhaseStep(
      d,
      "finalized",
      "mark the conversion finalized (revert is no longer possible)",
      "finalized",
      ["swapped", "finalized"],
    ),
  );
  return steps;
}

/** revert before the swap: the table is still the one plain table; remove what prepare added. */
export function abandonSteps(d: ConversionDesign, s: PrepareState): Step[] {
  const t = rel(d, d.table);
  const steps: Step[] = [];
  if (s.parentExists)
    steps.push({
      id: "drop-parent",
      title: `drop the unused partitioned parent ${d.names.parent} and its empty partitions`,
      locks: "nothing the application uses",
      kind: "transaction",
      statements: [{ sql: `DROP TABLE ${rel(d, d.names.parent)}` }],
    });
  // The ingest_xid column and its index stay: rollup-hourly can use them on the plain table too.
  for (const name of [d.names.newKeyIndex, d.names.oldKeyIndex]) {
    if ((s.builtIndexes[name] ?? "absent") === "absent") continue;
    steps.push({
      id: `drop:${name}`,
      title: `drop index ${name} CONCURRENTLY`,
      locks: "SHARE UPDATE EXCLUSIVE (CONCURRENTLY): writes go on",
      kind: "concurrently",
      statements: [{ sql: `DROP INDEX CONCURRENTLY IF EXISTS ${rel(d, name)}` }],
    });
  }
  if (s.boundCheck !== "absent")
    steps.push({
      id: "drop-check",
      title: `drop the CHECK ${CONVERT_BOUND_CONSTRAINT}`,
      locks: "ACCESS EXCLUSIVE on the table for a few milliseconds, under lock_timeout",
      kind: "transaction",
      statements: [{ sql: `ALTER TABLE ${t} DROP CONSTRAINT IF EXISTS ${qi(CONVERT_BOUND_CONSTRAINT)}` }],
    });
  steps.push(
    markPhaseStep(d, "reverted", "mark the conversion reverted", "reverted", ["preparing", "prepared"]),
  );
  return steps;
}
