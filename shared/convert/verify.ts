// `migrate convert verify`: read-only checks that the converted table is whole and behaves as a
// partitioned table should. Counts and checksums are taken in one REPEATABLE READ snapshot: the
// whole table through the parent must equal the sum over its partitions read one by one (no row
// hidden, none seen twice), every partition's rows lie within its bounds, every partitioned index is
// valid (attached on every partition), the identity continues past the largest id, and EXPLAIN of a
// one-interval query scans one partition.
import { type Kysely, type RawBuilder, sql, type Transaction } from "kysely";
import { quoteLiteral } from "../db/quote.ts";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { boundLiteral, parsePartitionBound } from "../partitions/bounds.ts";
import type { PartitionInterval } from "../partitions/time.ts";
import { addIntervals } from "../partitions/time.ts";
import type { ConversionDesign } from "./design.ts";
import { inSchema } from "./step.ts";

export interface VerifyCheck {
  check: string;
  ok: boolean;
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  checks: VerifyCheck[];
  rows: number;
  partitions: number;
  historyRows: number;
}

interface Leaf {
  name: string;
  bound: string;
  rows: number;
  checksum: string;
  lo: Date | null;
  hi: Date | null;
}

/** What every check reads, and where it writes. */
interface Verify {
  trx: Transaction<DB>;
  d: ConversionDesign;
  table: Relation;
  add(check: string, ok: boolean, detail: string): void;
}

export async function verifyConversion(
  db: Kysely<DB>,
  d: ConversionDesign,
  interval: PartitionInterval,
): Promise<VerifyReport> {
  const checks: VerifyCheck[] = [];
  const add = (check: string, ok: boolean, detail: string) => checks.push({ check, ok, detail });
  return await db
    .transaction()
    .setIsolationLevel("repeatable read")
    .execute(async (trx) => {
      await sql`SET TRANSACTION READ ONLY`.execute(trx).catch(() => {});
      const v: Verify = { trx, d, table: inSchema(d, d.table), add };
      if (!(await checkPartitioned(v))) return { ok: false, checks, rows: 0, partitions: 0, historyRows: 0 };
      const children = await sql<{ name: string; bound: string }>`
      SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = ${relationOidSql(v.table)} ORDER BY c.relname`.execute(trx);
      checkHistory(v, children.rows);
      const leaves = await readLeaves(v, children.rows);
      const rows = await checkRowsAndChecksum(v, leaves);
      checkBounds(v, leaves);
      await checkIndexes(v);
      await checkIdentity(v);
      await checkPruning(v, interval, leaves.length);
      return {
        ok: checks.every((c) => c.ok),
        checks,
        rows,
        partitions: leaves.length,
        historyRows: leaves.find((l) => l.name === d.names.history)?.rows ?? 0,
      };
    });
}

async function checkPartitioned({ trx, table, add }: Verify): Promise<boolean> {
  const shape = await sql<{ relkind: string; strategy: string | null }>`
      SELECT c.relkind::text AS relkind, pt.partstrat::text AS strategy
        FROM pg_class c LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
       WHERE c.oid = ${relationOidSql(table)}`.execute(trx);
  const partitioned = shape.rows[0]?.relkind === "p" && shape.rows[0]?.strategy === "r";
  add(
    "partitioned",
    partitioned,
    partitioned ? `${displayRelation(table)} is RANGE-partitioned` : "not a RANGE-partitioned table",
  );
  return partitioned;
}

function checkHistory({ d, add }: Verify, children: { name: string; bound: string }[]): void {
  const history = children.find((c) => c.name === d.names.history);
  const expectedBound = `FOR VALUES FROM (MINVALUE) TO ('${boundLiteral(new Date(d.boundary), d.keyType)}')`;
  add(
    "historical partition",
    history !== undefined,
    history
      ? `${d.names.history} ${history.bound}`
      : `${d.names.history} is not a partition (dropped or detached by retention?)`,
  );
  if (!history) return;
  const b = parsePartitionBound(history.bound);
  const ok =
    b.kind === "range" && b.from === "MINVALUE" && b.to instanceof Date && b.to.toISOString() === d.boundary;
  add("historical bound", ok, ok ? expectedBound : `expected ${expectedBound}, found ${history.bound}`);
}

/** Each stored column's value, hashed per row: summed, it is a checksum of a set of rows. */
function rowHash(d: ConversionDesign): RawBuilder<unknown> {
  return sql`hashtextextended(row(${sql.join(d.columns.map(columnSql))})::text, 0)::numeric`;
}

async function readLeaves({ trx, d }: Verify, children: { name: string; bound: string }[]): Promise<Leaf[]> {
  const col = columnSql(d.timeColumn);
  const leaves: Leaf[] = [];
  for (const c of children) {
    const r = await sql<{ rows: number; checksum: string; lo: Date | null; hi: Date | null }>`
        SELECT count(*)::float8 AS rows, coalesce(sum(${rowHash(d)}), 0)::text AS checksum,
               min(${col}) AS lo, max(${col}) AS hi
          FROM ONLY ${relationSql(inSchema(d, c.name))}`.execute(trx);
    const counted = r.rows[0] ?? { rows: 0, checksum: "0", lo: null, hi: null };
    leaves.push({ ...c, ...counted });
  }
  return leaves;
}

/** The integer part of a numeric checksum. */
const checksumInt = (text: string) => BigInt(text.split(".")[0] ?? "0");

async function checkRowsAndChecksum({ trx, d, table, add }: Verify, leaves: Leaf[]): Promise<number> {
  const whole = await sql<{ rows: number; checksum: string }>`
      SELECT count(*)::float8 AS rows, coalesce(sum(${rowHash(d)}), 0)::text AS checksum FROM ${relationSql(table)}`.execute(
    trx,
  );
  const total = whole.rows[0] ?? { rows: 0, checksum: "0" };
  const leafRows = leaves.reduce((n, l) => n + l.rows, 0);
  const leafSum = leaves.reduce((n, l) => n + checksumInt(l.checksum), 0n);
  add(
    "rows and checksum",
    total.rows === leafRows && checksumInt(total.checksum) === leafSum,
    `${total.rows} rows through the parent, ${leafRows} in ${leaves.length} partitions; checksum ${total.checksum} vs ${leafSum}`,
  );
  return total.rows;
}

function checkBounds({ add }: Verify, leaves: Leaf[]): void {
  const outside: string[] = [];
  for (const l of leaves) {
    const b = parsePartitionBound(l.bound);
    if (b.kind !== "range" || l.rows === 0) continue;
    const lowOk =
      b.from === "MINVALUE" ||
      (b.from instanceof Date && l.lo !== null && l.lo.getTime() >= b.from.getTime());
    const highOk =
      b.to === "MAXVALUE" || (b.to instanceof Date && l.hi !== null && l.hi.getTime() < b.to.getTime());
    if (!lowOk || !highOk)
      outside.push(`${l.name} (${l.lo?.toISOString()} .. ${l.hi?.toISOString()}, ${l.bound})`);
  }
  add(
    "rows within bounds",
    outside.length === 0,
    outside.length === 0 ? "every partition's rows lie within its bounds" : outside.join("; "),
  );
}

async function checkIndexes({ trx, table, add }: Verify): Promise<void> {
  const badIndexes = await sql<{ name: string }>`
      SELECT ic.relname AS name FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
       WHERE x.indrelid = ${relationOidSql(table)} AND NOT (x.indisvalid AND x.indisready)`.execute(trx);
  add(
    "indexes",
    badIndexes.rows.length === 0,
    badIndexes.rows.length === 0
      ? "every index of the partitioned table is valid on every partition"
      : `not valid: ${badIndexes.rows.map((r) => r.name).join(", ")}`,
  );
}

/**
 * The identity's sequence: the one that depends on the column (what pg_get_serial_sequence looks
 * up, without handing it the table's name as text).
 */
function identitySequenceSql(table: Relation, column: string): RawBuilder<unknown> {
  const oid = relationOidSql(table);
  return sql`(SELECT dep.objid FROM pg_catalog.pg_depend dep
               JOIN pg_catalog.pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
              WHERE dep.classid = 'pg_catalog.pg_class'::regclass AND dep.refclassid = 'pg_catalog.pg_class'::regclass
                AND dep.refobjid = ${oid} AND a.attname = ${column} AND dep.deptype IN ('a', 'i')
              LIMIT 1)`;
}

async function checkIdentity({ trx, d, table, add }: Verify): Promise<void> {
  if (!d.identity) return;
  const c = d.identity.column;
  const r = await sql<{ last: string | null; max: string | null }>`
        SELECT pg_sequence_last_value(${identitySequenceSql(table, c)})::text AS last,
               (SELECT max(${columnSql(c)}) FROM ${relationSql(table)})::text AS max`.execute(trx);
  const last = r.rows[0]?.last ?? null;
  const max = r.rows[0]?.max ?? null;
  const ok = max === null || (last !== null && BigInt(last) >= BigInt(max));
  add("identity", ok, `${c}: sequence at ${last ?? "unused"}, largest ${c} ${max ?? "none"}`);
}

async function checkPruning({ trx, d, table, add }: Verify, interval: PartitionInterval, partitions: number) {
  const from = new Date(d.boundary);
  const to = addIntervals(from, interval, 1);
  const col = columnSql(d.timeColumn);
  // The bounds go in as constants, not parameters: the planner must see them to prune at plan
  // time, so that the plan EXPLAIN shows lists only the partitions the query reads.
  const literal = (at: Date) => sql.raw(quoteLiteral(boundLiteral(at, d.keyType)));
  const plan = await sql<{ "QUERY PLAN": unknown }>`
      EXPLAIN (FORMAT JSON) SELECT count(*) FROM ${relationSql(table)}
       WHERE ${col} >= ${literal(from)} AND ${col} < ${literal(to)}`.execute(trx);
  const scanned = relationsIn(plan.rows[0]?.["QUERY PLAN"]);
  add(
    "pruning",
    scanned.length === 1,
    `EXPLAIN of one ${interval} interval from ${d.boundary} scans ${scanned.length} of ${partitions} partitions (${scanned.join(", ")})`,
  );
}

function relationsIn(plan: unknown): string[] {
  const found = new Set<string>();
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      const o = node as Record<string, unknown>;
      if (typeof o["Relation Name"] === "string") found.add(o["Relation Name"]);
      Object.values(o).forEach(walk);
    }
  };
  walk(typeof plan === "string" ? JSON.parse(plan) : plan);
  return [...found];
}
