// The conversion design: decided once, from the catalog facts and the table's policy, when prepare
// starts, and stored (as JSON) with the conversion; swap, revert and finalize build their SQL from
// it. Pure. The stored shape is read back by later runs, so its fields do not change.
import type { TablePolicy } from "../config/policy.ts";
import { quoteIdentifiers } from "../db/quote.ts";
import { partitionName } from "../partitions/naming.ts";
import { defaultPartitionName } from "../partitions/plan.ts";
import { addIntervals, floorToInterval } from "../partitions/time.ts";
import { boundaryFor } from "./boundary.ts";
import type { OwnedSequence, TableFacts } from "./facts.ts";
import {
  CONVERT_BOUND_CONSTRAINT,
  type ConvertNames,
  convertNames,
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

/** An index the new parent gets, and the old table's index that matches it at ATTACH. */
export interface ParentIndex {
  /** The old table's index (after the swap: the parent's index has this name). */
  original: string;
  /** Parent's name until the swap. */
  temporary: string;
  /** Old table's index name once it is the historical partition. */
  history: string;
  /** "CREATE INDEX" text after the name and the relation (" USING ..."); empty for constraints. */
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

export interface PrimaryKeyDesign {
  name: string;
  columns: string[];
  newColumns: string[];
  changes: boolean;
}

/**
 * The version of the design's shape this release stores. Raise it with every change to the
 * shape, and teach design-schema.ts to read the version before it.
 */
export const DESIGN_VERSION = 2;

/** Decided once when prepare starts and stored with the conversion: swap, revert and finalize use it. */
export interface ConversionDesign {
  version: typeof DESIGN_VERSION;
  schema: string;
  table: string;
  timeColumn: string;
  keyType: "timestamptz" | "timestamp";
  boundary: string;
  names: ConvertNames;
  primaryKey: PrimaryKeyDesign | null;
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

/** The partition key's type; null when the column is not a timestamp. */
export function keyType(facts: TableFacts, timeColumn: string): "timestamptz" | "timestamp" | null {
  // Without the precision: timestamp(3) partitions like timestamp.
  const t = facts.columns.find((c) => c.name === timeColumn)?.type.replace(/\(\d+\)/, "");
  if (t === "timestamp with time zone") return "timestamptz";
  if (t === "timestamp without time zone") return "timestamp";
  return null;
}

/** Our own objects from an earlier (interrupted) prepare are not the user's and never block. */
export function isOurs(name: string, names: ConvertNames): boolean {
  return name === names.newKeyIndex || name === names.oldKeyIndex || name === CONVERT_BOUND_CONSTRAINT;
}

/** Unique constraints and indexes that lack the time column: a partitioned table cannot have them. */
export function uniqueWithoutTime(facts: TableFacts, timeColumn: string, names: ConvertNames) {
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

export function design(facts: TableFacts, input: ConvertInput): ConversionDesign {
  const { policy } = input;
  const { schema, name: table } = facts.table;
  const names = convertNames(table);
  const time = policy.timeColumn;
  const boundary = boundaryFor(input);
  const primaryKey = primaryKeyDesign(facts, time);
  const wantsIngest = policy.rollup !== undefined;
  const buildIngestIndex = wantsIngest && !hasIngestIndex(facts);
  const identityColumn = facts.columns.find((c) => c.identity !== "");
  const addIngestColumn = wantsIngest && !facts.columns.some((c) => c.name === INGEST_COLUMN);
  const columns = facts.columns.filter((c) => !c.generated).map((c) => c.name);
  if (addIngestColumn) columns.push(INGEST_COLUMN);

  return {
    version: DESIGN_VERSION,
    schema,
    table,
    timeColumn: time,
    keyType: keyType(facts, time) ?? "timestamptz",
    boundary: boundary.toISOString(),
    names,
    primaryKey,
    identity: identityColumn
      ? {
          column: identityColumn.name,
          kind: identityColumn.identity === "a" ? "a" : "d",
          indexed: facts.indexes.some((i) => i.valid && i.columns[0] === identityColumn.name),
        }
      : null,
    ownedSequences: facts.ownedSequences,
    parentIndexes: parentIndexes(facts, time, names, primaryKey, buildIngestIndex),
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
    partitions: newPartitions(policy, table, boundary, input.now),
    defaultPartition: policy.defaultPartition ? defaultPartitionName(table) : null,
    columns,
    addIngestColumn,
    buildIngestIndex,
  };
}

/** The key the partitioned table gets: the old one, with the time column appended when it lacks it. */
function primaryKeyDesign(facts: TableFacts, time: string): PrimaryKeyDesign | null {
  const pk = facts.constraints.find((k) => k.type === "p");
  if (!pk) return null;
  const changes = !pk.columns.includes(time);
  return {
    name: pk.name,
    columns: pk.columns,
    newColumns: changes ? [...pk.columns, time] : pk.columns,
    changes,
  };
}

/** A valid btree index leading with (ingest_xid, ...): rollup-hourly's reads need no other. */
function hasIngestIndex(facts: TableFacts): boolean {
  return facts.indexes.some(
    (i) => i.valid && i.columns[0] === INGEST_COLUMN && i.body.startsWith(" USING btree (ingest_xid"),
  );
}

function parentIndex(original: string, rest: Omit<ParentIndex, "original" | "temporary" | "history">) {
  return {
    original,
    temporary: temporaryIndexName(original),
    history: historyIndexName(original),
    ...rest,
  };
}

/**
 * The parent's indexes, in the order they are created: the primary key, unique constraints with
 * the time column, plain indexes (not ours, not unique without the time column), then the
 * ingest_xid index when rollup-hourly needs one the table lacks.
 */
function parentIndexes(
  facts: TableFacts,
  time: string,
  names: ConvertNames,
  primaryKey: PrimaryKeyDesign | null,
  buildIngestIndex: boolean,
): ParentIndex[] {
  const out: ParentIndex[] = [];
  const pk = facts.constraints.find((k) => k.type === "p");
  if (pk && primaryKey) {
    out.push(
      parentIndex(pk.indexName ?? pk.name, {
        body: "",
        unique: true,
        constraint: "p",
        constraintDef: primaryKey.changes ? null : pk.definition,
        columns: primaryKey.newColumns,
        replacesKey: primaryKey.changes,
      }),
    );
  }
  for (const k of facts.constraints) {
    if (k.type !== "u" || !k.columns.includes(time)) continue;
    out.push(
      parentIndex(k.indexName ?? k.name, {
        body: "",
        unique: true,
        constraint: "u",
        constraintDef: k.definition,
        columns: k.columns,
        replacesKey: false,
      }),
    );
  }
  for (const i of facts.indexes) {
    if (i.constraintName || isOurs(i.name, names)) continue;
    if (i.unique && !i.columns.includes(time)) continue; // kept on history only (--drop-unique)
    out.push(
      parentIndex(i.name, {
        body: i.body,
        unique: i.unique,
        constraint: null,
        constraintDef: null,
        columns: i.columns,
        replacesKey: false,
      }),
    );
  }
  if (buildIngestIndex) {
    out.push(
      parentIndex(names.ingestIndex, {
        body: ` USING btree (${quoteIdentifiers([INGEST_COLUMN, time])})`,
        unique: false,
        constraint: null,
        constraintDef: null,
        columns: [INGEST_COLUMN, time],
        replacesKey: false,
      }),
    );
  }
  return out;
}

/** Partitions from the boundary on, one interval each, until premake intervals past now (at least one). */
function newPartitions(
  policy: TablePolicy,
  table: string,
  boundary: Date,
  now: Date,
): ConversionDesign["partitions"] {
  const partitions: ConversionDesign["partitions"] = [];
  const horizon = addIntervals(floorToInterval(now, policy.interval), policy.interval, policy.premake + 1);
  for (let from = boundary; partitions.length === 0 || from.getTime() < horizon.getTime(); ) {
    const to = addIntervals(from, policy.interval, 1);
    partitions.push({
      name: partitionName(policy.naming, table, from),
      from: from.toISOString(),
      to: to.toISOString(),
    });
    from = to;
  }
  return partitions;
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
