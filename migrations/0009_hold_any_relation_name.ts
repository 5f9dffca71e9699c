// Holds name partitions the way retention shows them: schema and name each quoted as quote_ident
// would (public."Readings 2025"), so any name PostgreSQL allows can be held. 0003 accepted only plain
// lower-case names, which left partitions with upper case, dots or spaces without a hold.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE telemetry_jobs.retention_holds
              DROP CONSTRAINT retention_holds_partition_name_check,
              ADD CONSTRAINT retention_holds_partition_name_check CHECK (length(partition_name) BETWEEN 3 AND 300)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // A hold on a name the old rule refuses makes this fail (the CHECK is validated), rather than
  // dropping the hold silently: unhold it first.
  await sql`ALTER TABLE telemetry_jobs.retention_holds
              DROP CONSTRAINT retention_holds_partition_name_check,
              ADD CONSTRAINT retention_holds_partition_name_check
                CHECK (partition_name ~ '^[a-z_][a-z0-9_]*\\.[a-z_][a-z0-9_]*$')`.execute(db);
}
