// The greenfield telemetry schema as release 0007 made it. telemetry_points is RANGE-partitioned by
// month on ts; partition-manager creates the children. Its primary key includes ts because a
// partitioned table's unique keys must include the partition key. The DEFAULT partitions are made
// here, while the tables are new and empty (CREATE ... PARTITION OF takes ACCESS EXCLUSIVE on the
// parent, harmless only now).
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE public.devices (
      id text PRIMARY KEY,
      name text,
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`
    CREATE TABLE public.telemetry_points (
      id uuid NOT NULL DEFAULT gen_random_uuid(),
      device_id text NOT NULL REFERENCES public.devices (id),
      message_id text,
      ts timestamptz NOT NULL,
      metrics jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (id, ts)
    ) PARTITION BY RANGE (ts)`.execute(db);
  await sql`CREATE INDEX telemetry_points_device_ts_idx ON public.telemetry_points (device_id, ts)`.execute(
    db,
  );
  await sql`CREATE INDEX telemetry_points_ts_idx ON public.telemetry_points (ts)`.execute(db);
  await sql`CREATE TABLE public.telemetry_points_default PARTITION OF public.telemetry_points DEFAULT`.execute(
    db,
  );

  // Rollups keep their own, longer retention and are themselves a managed partitioned table.
  await sql`
    CREATE TABLE public.telemetry_rollups_hourly (
      device_id text NOT NULL,
      metric_key text NOT NULL,
      bucket_ts timestamptz NOT NULL,
      sample_count bigint NOT NULL,
      sum double precision NOT NULL,
      min double precision NOT NULL,
      max double precision NOT NULL,
      avg double precision NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (device_id, metric_key, bucket_ts)
    ) PARTITION BY RANGE (bucket_ts)`.execute(db);
  await sql`
    CREATE TABLE public.telemetry_rollups_hourly_default
      PARTITION OF public.telemetry_rollups_hourly DEFAULT`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE public.telemetry_rollups_hourly`.execute(db);
  await sql`DROP TABLE public.telemetry_points`.execute(db);
  await sql`DROP TABLE public.devices`.execute(db);
}
