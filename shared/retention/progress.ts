// Where a block-range pass of row deletes starts: the nextBlock of the last audit record of a
// delete_rows action on the relation (there only when that pass stopped early, by block range). A
// killed run records nothing, so the next one starts where the last recorded one left it, or at
// block 0: always correct (a pass wraps round), only slower.
import { type Kysely, sql } from "kysely";
import type { DB } from "../db/schema.ts";

export async function resumeBlock(db: Kysely<DB>, table: string, relation: string): Promise<number> {
  const r = await sql<{ next_block: string | null }>`
    SELECT detail->>'nextBlock' AS next_block
      FROM telemetry_jobs.job_actions
     WHERE table_name = ${table} AND kind = 'delete_rows' AND partition_name = ${relation} AND outcome = 'ok'
     ORDER BY id DESC LIMIT 1`.execute(db);
  const next = Number(r.rows[0]?.next_block ?? 0);
  return Number.isSafeInteger(next) && next > 0 ? next : 0;
}
