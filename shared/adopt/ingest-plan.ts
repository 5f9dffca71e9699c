// Planning rollup change-tracking for an application's existing table: the ingest_xid column that
// rollup-hourly uses to find new rows, and an index on (ingest_xid, time) so that finding them costs
// in proportion to the new rows. The planner is pure: it turns what the catalog says (IngestFacts)
// into the statements still missing, so a run killed at any point is finished by the next run, which
// reads the catalog again and plans only what is left.
//
// What PostgreSQL does to a partitioned index that is still INVALID (built ON ONLY, some partitions
// not yet attached), checked on 14 and 18: a partition created with CREATE TABLE ... PARTITION OF,
// or attached with ALTER TABLE ... ATTACH PARTITION, gets an index of its own built and attached at
// once (named by PostgreSQL, e.g. t_p1_ingest_xid_ts_idx; on ATTACH it reuses a matching valid index
// the table already has, and builds one, non-concurrently, under the ATTACH's lock otherwise). The
// parent index stays INVALID: only ALTER INDEX ... ATTACH PARTITION re-checks it. So the state "every
// partition attached, parent still invalid" can occur (also when the one partition that was missing
// an index is detached); re-running ATTACH PARTITION for an index that is already attached changes
// nothing but makes PostgreSQL re-check and mark the parent valid, which is what the plan does then.
// An invalid index (a killed CREATE INDEX CONCURRENTLY) is never attached by PostgreSQL, and ALTER
// INDEX ... ATTACH PARTITION refuses one, so our invalid leftovers are dropped and rebuilt.
//
// Each partition has a default of its own: a row inserted into the parent takes the parent's, a row
// inserted directly into a partition takes the partition's. ALTER TABLE parent ALTER COLUMN ... SET
// DEFAULT (and so ADD COLUMN followed by it) sets every partition's too, but a table attached later
// keeps what it had, none for one made with CREATE TABLE ... (LIKE parent) without INCLUDING
// DEFAULTS; its directly inserted rows would get a NULL ingest_xid, never new to rollups. So each
// partition's default is checked and set on its own.
//
// A partition whose DETACH ... CONCURRENTLY was interrupted (pg_inherits.inhdetachpending) is leaving
// the table, and checked on 14 and 18: ADD COLUMN and SET DEFAULT on the parent do not reach it, it
// cannot be altered itself, ALTER INDEX ... ATTACH PARTITION refuses its indexes, and a parent index
// becomes valid without it. It is left out. But once the parent has a column the partition lacks,
// PostgreSQL 18 refuses to FINALIZE that detach ("could not convert row type"; 14 to 17 finish it),
// so while such a partition exists the column is not added: adoption waits for the detach to finish.
import { derivedName } from "../convert/names.ts";
import { displayRelation, quoteIdent, type Relation } from "../db/relation.ts";
import type { IngestAction } from "./ingest-actions.ts";
import type { IngestFacts, IngestIndexFact, IngestPartitionFact } from "./ingest-facts.ts";

export const INGEST_COLUMN = "ingest_xid";
export const INGEST_INDEX_SUFFIX = "_ingest_xid_idx";
/** The default as PostgreSQL prints it back (pg_get_expr). */
export const INGEST_DEFAULT = "pg_current_xact_id()";

export interface IngestPlan {
  actions: IngestAction[];
  /** Why nothing may be done; when set, actions is empty (nothing is begun half way). */
  refusal?: string;
  /**
   * Why nothing is done yet though nothing is wrong with the table: a partition's interrupted detach
   * must be finished first. When set, actions is empty; a later run goes on by itself.
   */
  postponed?: string;
}

export function ingestIndexName(table: string): string {
  return derivedName(table, INGEST_INDEX_SUFFIX);
}

export function planIngestTracking(facts: IngestFacts): IngestPlan {
  const plan = planActions(facts);
  if (plan.refusal !== undefined || facts.column !== null || facts.detachPending.length === 0) return plan;
  const shown = displayRelation(facts.table);
  const names = facts.detachPending.map((p) => displayRelation(p.relation));
  return {
    actions: [],
    postponed:
      `${shown} has ${names.length === 1 ? "a partition" : "partitions"} whose DETACH PARTITION ... CONCURRENTLY was interrupted ` +
      `(${names.join(", ")}). Adding ${INGEST_COLUMN} now would not reach ${names.length === 1 ? "it" : "them"}, and PostgreSQL 18 ` +
      "could then never finish the detach, so change tracking waits until it is finished: retention does that, or run " +
      `${names.map((n) => `ALTER TABLE ${shown} DETACH PARTITION ${n} FINALIZE`).join("; ")}. Rollups of ${shown} start after that.`,
  };
}

/** A refusal (why nothing may be done), or undefined once the step's actions are added. */
type Refusal = string | undefined;

function planActions(facts: IngestFacts): IngestPlan {
  const actions: IngestAction[] = [];
  const refusal =
    tableRefusal(facts) ??
    planColumn(facts, actions) ??
    (facts.relkind === "r" ? planPlainIndex(facts, actions) : planPartitioned(facts, actions));
  return refusal === undefined ? { actions } : { actions: [], refusal };
}

/** The table exists, is a table, and has the time column. */
function tableRefusal(facts: IngestFacts): Refusal {
  const shown = displayRelation(facts.table);
  if (facts.relkind === undefined) return `${shown} does not exist`;
  if (facts.relkind !== "r" && facts.relkind !== "p")
    return `${shown} is neither a plain table nor a partitioned one (relkind '${facts.relkind}'); change tracking can only be added to a table`;
  if (!facts.timeColumnExists) return `${shown} has no column ${quoteIdent(facts.timeColumn)}`;
  return undefined;
}

/** The table's ingest_xid column and its default. */
function planColumn(facts: IngestFacts, actions: IngestAction[]): Refusal {
  const t = facts.table;
  const shown = displayRelation(t);
  if (facts.column === null) {
    actions.push({ kind: "add_column", table: t });
  } else if (facts.column.type !== "xid8") {
    return (
      `${shown} already has a column ${INGEST_COLUMN} of type ${facts.column.type}, not xid8; rollup-hourly ` +
      `cannot use it. Rename or drop that column (ALTER TABLE ${shown} RENAME COLUMN ${INGEST_COLUMN} TO ...), then run adoption again`
    );
  } else if (facts.column.default === null) {
    actions.push({ kind: "set_default", table: t });
  } else if (facts.column.default !== INGEST_DEFAULT) {
    return (
      `${shown}.${INGEST_COLUMN} has the default ${facts.column.default}, not ${INGEST_DEFAULT}, so new rows would not ` +
      `carry their transaction id; set it (ALTER TABLE ${shown} ALTER COLUMN ${INGEST_COLUMN} SET DEFAULT ${INGEST_DEFAULT}) or drop the default, then run adoption again`
    );
  }
  return undefined;
}

const indexColumns = (facts: IngestFacts) => `(${INGEST_COLUMN}, ${quoteIdent(facts.timeColumn)})`;

/** A plain table's index, built concurrently (after dropping our invalid leftover). */
function planPlainIndex(facts: IngestFacts, actions: IngestAction[]): Refusal {
  const t = facts.table;
  const ourName = ingestIndexName(t.name);
  if (facts.indexes.some((i) => i.valid && i.leading)) return undefined;
  const ours = facts.indexes.find((i) => i.name === ourName);
  if (ours) {
    if (ours.valid || !ours.leading)
      return `${displayRelation(t)} has an index ${quoteIdent(ourName)} that is not an index on ${indexColumns(facts)}; rename it, then run adoption again`;
    actions.push({ kind: "drop_invalid_index", on: t, index: { schema: t.schema, name: ourName } });
  } else if (facts.indexNameTaken) {
    return `the name ${quoteIdent(t.schema)}.${quoteIdent(ourName)} is already used by another relation; rename it`;
  }
  actions.push({ kind: "build_index_concurrently", on: t, index: ourName, timeColumn: facts.timeColumn });
  return undefined;
}

/** A partitioned table: its partitions' defaults, then the partitioned index and one per partition. */
function planPartitioned(facts: IngestFacts, actions: IngestAction[]): Refusal {
  const t = facts.table;
  const shown = displayRelation(t);
  const nested = facts.partitions.filter((p) => p.relkind === "p");
  if (nested.length > 0)
    return (
      `${shown} has partitions that are themselves partitioned (${nested.map((p) => displayRelation(p.relation)).join(", ")}); ` +
      "adding change tracking to multi-level partitioning is not supported: add the column and indexes by hand"
    );
  const other = facts.partitions.filter((p) => p.relkind !== "r");
  if (other.length > 0)
    return (
      `${shown} has partitions that cannot be indexed (${other.map((p) => `${displayRelation(p.relation)}, relkind '${p.relkind}'`).join("; ")}); ` +
      "adding change tracking is not supported there"
    );
  const otherDefault = facts.partitions.find(
    (p) => p.columnDefault !== null && p.columnDefault !== INGEST_DEFAULT,
  );
  if (otherDefault) {
    const p = displayRelation(otherDefault.relation);
    return (
      `partition ${p}.${INGEST_COLUMN} has the default ${otherDefault.columnDefault}, not ${INGEST_DEFAULT}, so rows inserted ` +
      `directly into it would not carry their transaction id; set it (ALTER TABLE ${p} ALTER COLUMN ${INGEST_COLUMN} SET DEFAULT ${INGEST_DEFAULT}) ` +
      "or drop the default, then run adoption again"
    );
  }
  // The parent's ADD COLUMN / SET DEFAULT sets every partition's default as well.
  if (facts.column?.default === INGEST_DEFAULT)
    for (const p of facts.partitions)
      if (p.columnDefault === null)
        actions.push({ kind: "set_default", table: p.relation, partitionOf: t, bound: p.bound });
  if (facts.indexes.some((i) => i.partitioned && i.valid && i.leading)) return undefined;
  const parent = planParentIndex(facts, actions);
  if (typeof parent === "string") return parent;
  return planPartitionIndexes(facts, parent, actions) ?? planRevalidate(facts, parent, actions);
}

/** The partitioned index to finish: ours, someone's invalid one of our shape, or a new one. */
interface ParentIndex {
  existing: IngestIndexFact | undefined;
  index: Relation;
}

function planParentIndex(facts: IngestFacts, actions: IngestAction[]): ParentIndex | string {
  const t = facts.table;
  const ourName = ingestIndexName(t.name);
  let parent = facts.indexes.find((i) => i.name === ourName);
  if (parent && !(parent.partitioned && parent.exact))
    return `${displayRelation(t)} has an index ${quoteIdent(ourName)} that is not a partitioned index on exactly ${indexColumns(facts)}; rename it, then run adoption again`;
  // An invalid partitioned index of exactly our shape under another name (someone began this by
  // hand) is finished rather than duplicated.
  parent ??= facts.indexes.find((i) => i.partitioned && i.exact && !i.valid);
  if (!parent) {
    if (facts.indexNameTaken)
      return `the name ${quoteIdent(t.schema)}.${quoteIdent(ourName)} is already used by another relation; rename it`;
    actions.push({ kind: "create_parent_index", table: t, index: ourName, timeColumn: facts.timeColumn });
  }
  return { existing: parent, index: { schema: t.schema, name: parent?.name ?? ourName } };
}

/** Each partition without an index attached to the parent's: attach a fitting one, or build one. */
function planPartitionIndexes(facts: IngestFacts, parent: ParentIndex, actions: IngestAction[]): Refusal {
  const parentIndex = parent.index;
  const parentName = parentIndex.name;
  const missing = facts.partitions.filter((p) => !p.indexes.some((i) => i.attachedTo === parentName));
  const toBuild = missing.filter((p) => !attachable(p)).length;
  let n = 0;
  for (const p of missing) {
    const existing = attachable(p);
    if (existing) {
      actions.push({
        kind: "attach_index",
        parentIndex,
        childIndex: { schema: p.relation.schema, name: existing.name },
        partition: p.relation,
      });
      continue;
    }
    const childName = ingestIndexName(p.relation.name);
    const child: Relation = { schema: p.relation.schema, name: childName };
    const leftover = p.indexes.find((i) => i.name === childName);
    if (leftover) {
      if (leftover.valid || !leftover.leading || leftover.attachedTo !== null)
        return (
          `partition ${displayRelation(p.relation)} has an index ${quoteIdent(childName)} that cannot be attached to ${quoteIdent(parentName)} ` +
          `(it is not exactly ${indexColumns(facts)}, or is attached elsewhere); rename it, then run adoption again`
        );
      actions.push({ kind: "drop_invalid_index", on: p.relation, index: child });
    } else if (p.childNameTaken) {
      return `the name ${displayRelation(child)} is already used by another relation; rename it, then run adoption again`;
    }
    n++;
    actions.push({
      kind: "build_index_concurrently",
      on: p.relation,
      index: childName,
      timeColumn: facts.timeColumn,
      step: { n, of: toBuild },
    });
    actions.push({ kind: "attach_index", parentIndex, childIndex: child, partition: p.relation });
  }
  return undefined;
}

/**
 * Every partition has an attached index yet the parent is still invalid (see the note at the top):
 * attach one again so that PostgreSQL re-checks the parent.
 */
function planRevalidate(facts: IngestFacts, parent: ParentIndex, actions: IngestAction[]): Refusal {
  const { existing, index: parentIndex } = parent;
  const missing = facts.partitions.filter((p) => !p.indexes.some((i) => i.attachedTo === parentIndex.name));
  if (!existing || existing.valid || missing.length > 0) return undefined;
  const first = facts.partitions[0];
  const attached = first?.indexes.find((i) => i.attachedTo === parentIndex.name);
  if (!first || !attached)
    return (
      `${displayRelation(facts.table)}'s index ${quoteIdent(parentIndex.name)} is invalid and the table has no partitions to re-check it with; ` +
      `DROP INDEX ${displayRelation(parentIndex)}, then run adoption again`
    );
  actions.push({
    kind: "attach_index",
    parentIndex,
    childIndex: { schema: first.relation.schema, name: attached.name },
    partition: first.relation,
    revalidate: true,
  });
  return undefined;
}

/** A valid index of exactly our shape that no partitioned index has claimed yet. */
function attachable(p: IngestPartitionFact): IngestIndexFact | undefined {
  return p.indexes.find((i) => i.valid && i.exact && !i.partitioned && i.attachedTo === null);
}
