// `migrate convert verify`: read-only checks that the converted table is whole and behaves as a
// partitioned table should. Counts and checksums are taken in one REPEATABLE READ snapshot: the
// whole table through the parent must equal the sum over its partitions read one by one (no row
// hidden, none seen twice), every partition's rows lie within its bounds, every partitioned index is
// valid (attached on every partition), the identity continues past the largest id, and EXPLAIN of a
// one-interval query scans one partition.
import { type Kysely, sql } from "kysely";
import { quoteIdentifier as qi, quoteLiteral as ql } from "../db/quote.ts";
import { boundLiteral, parsePartitionBound } from "../partitions/bounds.ts";
import type { PartitionInterval } from "../partitions/time.ts";
import { addIntervals } from "../partitions/time.ts";
import type { ConversionDesign } from "./design.ts";

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

export async function verifyConversion(
  db: Kysely<any>,
  d: ConversionDesign,
  interval: PartitionInterval,
): Promise<VerifyReport> {
  const t = `${qi(d.schema)}.${qi(d.table)}`;
  const rowText = `hashtextextended(row(${d.columns.map(qi).join(", ")})::text, 0)::numeric`;
  const checks: VerifyCheck[] = [];
  const add = (check: string, ok: boolean, detail: string) => checks.push({ check, ok, detail });

  return await db
    .transaction()
    .setIsolationLevel("repeatable read")
    .execute(async (trx) => {
      await sql`SET TRANSACTION READ ONLY`.execute(trx).catch(() => {});
      const shape = await sql<{ relkind: string; strategy: string | null }>`
      SELECT c.relkind::text AS relkind, pt.partstrat::text AS strategy
        FROM pg_class c LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
       WHERE c.oid = ${t}::regclass`.execute(trx);
      const partitioned = shape.rows[0]?.relkind === "p" && shape.rows[0]?.strategy === "r";
      add(
        "partitioned",
        partitioned,
        partitioned ? `${d.schema}.${d.table} is RANGE-partitioned` : "not a RANGE-partitioned table",
      );
      if (!partitioned) return { ok: false, checks, rows: 0, partitions: 0, historyRows: 0 };

      const children = await sql<{ name: string; bound: string }>`
      SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = ${t}::regclass ORDER BY c.relname`.execute(trx);
      const history = children.rows.find((c) => c.name === d.names.history);
      const expectedBound = `FOR VALUES FROM (MINVALUE) TO ('${boundLiteral(new Date(d.boundary), d.keyType)}')`;
      add(
        "historical partition",
        history !== undefined,
        history
          ? `${d.names.history} ${history.bound}`
          : `${d.names.history} is not a partition (dropped or detached by retention?)`,
      );
      if (history) {
        const b = parsePartitionBound(history.bound);
        const ok =
          b.kind === "range" &&
          b.from === "MINVALUE" &&
          b.to instanceof Date &&
          b.to.toISOString() === d.boundary;
        add("historical bound", ok, ok ? expectedBound : `expected ${expectedBound}, found ${history.bound}`);
      }

      const col = qi(d.timeColumn);
      const leaves: Leaf[] = [];
      for (const c of children.rows) {
        const r = await sql<{ rows: number; checksum: string; lo: Date | null; hi: Date | null }>`
        SELECT count(*)::float8 AS rows, coalesce(sum(${sql.raw(rowText)}), 0)::text AS checksum,
               min(${sql.raw(col)}) AS lo, max(${sql.raw(col)}) AS hi
          FROM ONLY ${sql.raw(`${qi(d.schema)}.${qi(c.name)}`)}`.execute(trx);
        leaves.push({ ...c, ...r.rows[0]! });
      }
      const whole = await sql<{ rows: number; checksum: string }>`
      SELECT count(*)::float8 AS rows, coalesce(sum(${sql.raw(rowText)}), 0)::text AS checksum FROM ${sql.raw(t)}`.execute(
        trx,
      );
      const total = whole.rows[0]!;
      const leafRows = leaves.reduce((n, l) => n + l.rows, 0);
      const leafSum = leaves.reduce((n, l) => n + BigInt(l.checksum.split(".")[0]!), 0n);
      add(
        "rows and checksum",
        total.rows === leafRows && BigInt(total.checksum.split(".")[0]!) === leafSum,
        `${total.rows} rows through the parent, ${leafRows} in ${leaves.length} partitions; checksum ${total.checksum} vs ${leafSum}`,
      );

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

      const badIndexes = await sql<{ name: string }>`
      SELECT ic.relname AS name FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
       WHERE x.indrelid = ${t}::regclass AND NOT (x.indisvalid AND x.indisready)`.execute(trx);
      add(
        "indexes",
        badIndexes.rows.length === 0,
        badIndexes.rows.length === 0
          ? "every index of the partitioned table is valid on every partition"
          : `not valid: ${badIndexes.rows.map((r) => r.name).join(", ")}`,
      );

      if (d.identity) {
        const c = d.identity.column;
        const r = await sql<{ last: string | null; max: string | null }>`
        SELECT pg_sequence_last_value(pg_get_serial_sequence(${t}, ${c})::regclass)::text AS last,
               (SELECT max(${sql.raw(qi(c))}) FROM ${sql.raw(t)})::text AS max`.execute(trx);
        const { last, max } = r.rows[0]!;
        const ok = max === null || (last !== null && BigInt(last) >= BigInt(max));
        add("identity", ok, `${c}: sequence at ${last ?? "unused"}, largest ${c} ${max ?? "none"}`);
      }

      const from = new Date(d.boundary);
      const to = addIntervals(from, interval, 1);
      const plan = await sql<{ "QUERY PLAN": unknown }>`
      EXPLAIN (FORMAT JSON) SELECT count(*) FROM ${sql.raw(t)}
       WHERE ${sql.raw(col)} >= ${sql.raw(ql(boundLiteral(from, d.keyType)))} AND ${sql.raw(col)} < ${sql.raw(ql(boundLiteral(to, d.keyType)))}`.execute(
        trx,
      );
      const scanned = relationsIn(plan.rows[0]?.["QUERY PLAN"]);
      add(
        "pruning",
        scanned.length === 1,
        `EXPLAIN of one ${interval} interval from ${d.boundary} scans ${scanned.length} of ${leaves.length} partitions (${scanned.join(", ")})`,
      );

      return {
        ok: checks.every((c) => c.ok),
        checks,
        rows: total.rows,
        partitions: leaves.length,
        historyRows: leaves.find((l) => l.name === d.names.history)?.rows ?? 0,
      };
    });
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
