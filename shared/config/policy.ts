// The policy file: one entry per managed table. Later features (retention, rollups) add optional
// blocks to TablePolicy; unknown keys are rejected so a typo never silently does nothing.
import { z } from "zod";
import { defaultNamingTemplate, partitionName, requiredPlaceholders } from "../partitions/naming.ts";
import { INTERVALS } from "../partitions/time.ts";
import { type Duration, parseDuration } from "./duration.ts";
import { checkExportRetention, ExportPolicySchema } from "./export-policy.ts";
import { IDENTIFIER_PATTERN, isIdentifier, parseQualifiedName, type QualifiedName } from "./identifiers.ts";
import { checkRollupTargets } from "./rollup-targets.ts";

const identifier = z
  .string()
  .regex(IDENTIFIER_PATTERN, "must be a lower-case PostgreSQL identifier matching ^[a-z_][a-z0-9_]{0,62}$");

const qualifiedTable = z
  .string()
  .refine((v) => parseQualifiedName(v) !== undefined, {
    message:
      'must be "table" or "schema.table", each part a lower-case identifier (letters, digits, _); quotes, dots and semicolons are not allowed',
  })
  .transform((v) => {
    const q = parseQualifiedName(v)!;
    return `${q.schema}.${q.name}`;
  });

export const RETENTION_MODES = ["drop", "detach", "archive", "export"] as const;
const keepText = z
  .string()
  .refine((v) => parseDuration(v) !== undefined, {
    message:
      'must be a positive whole number and a unit, e.g. "90 days", "24 months", "1 year" (hour, day, week, month, year)',
  })
  .refine((v) => (parseDuration(v)?.amount ?? 0) > 0, { message: "must be greater than zero" });

/** Batched work (row deletes, rollup rebuilds) stops after this long; the next run resumes. */
const timeBudgetMs = z
  .number()
  .int()
  .min(1)
  .max(24 * 3_600_000)
  .default(600_000);

export const RetentionPolicySchema = z
  .object({
    keep: keepText.describe('How long rows are kept: "90 days", "24 months"... Cutoff = now - keep, in UTC.'),
    mode: z
      .enum(RETENTION_MODES)
      .default("drop")
      .describe(
        'Expired partitions: drop them, detach and keep them, detach and move them to archiveSchema, or export them to Parquet under "export".to, verify the files, then drop them.',
      ),
    archiveSchema: identifier
      .default("telemetry_archive")
      .describe("Schema that receives archived partitions."),
    maxDropsPerRun: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(3)
      .describe("A run that would remove more partitions than this is refused (exit 2) unless --force."),
    exactCutoff: z
      .boolean()
      .default(false)
      .describe(
        'Also delete the expired rows of the partition that straddles the cutoff (batched deletes). Not with mode "export".',
      ),
    batchSize: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(5_000)
      .describe(
        "Rows in the first delete batch of a row-delete pass (about); later batches are sized to take about 100 ms each.",
      ),
    batchPauseMs: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .default(50)
      .describe("Pause after each delete batch that deleted rows (one that deleted none wrote nothing)."),
    timeBudgetMs: timeBudgetMs.describe(
      "Row deletes of one run (all of them together) stop after this long; the next run resumes.",
    ),
    export: ExportPolicySchema.optional().describe(
      'Mode "export" only: where and how expired partitions are written before they are dropped.',
    ),
  })
  .strict()
  .superRefine(checkExportRetention)
  // `keep` is parsed here, once: everything that needs the window reads keepDuration.
  .transform((retention) => ({ ...retention, keepDuration: checkedDuration(retention.keep) }));

/** A window that passed keepText's checks, as a Duration. */
function checkedDuration(text: string): Duration {
  const parsed = parseDuration(text);
  if (!parsed) throw new Error(`retention.keep "${text}" passed validation but does not parse`);
  return parsed;
}

const metricColumns = z
  .array(identifier)
  .min(1)
  .max(200)
  .refine((cols) => new Set(cols).size === cols.length, { message: "lists a column twice" });

export const RollupPolicySchema = z
  .object({
    target: qualifiedTable
      .default("public.telemetry_rollups_hourly")
      .describe(
        "Rollup table: (group, metric_key, bucket_ts) primary key, sample_count, sum, min, max, avg, updated_at.",
      ),
    groupBy: identifier
      .default("device_id")
      .describe("Column rows are grouped by (stored as text in the target)."),
    metrics: z
      .union([
        z
          .object({
            jsonb: identifier.describe("A JSONB column of key -> value; finite numbers only count."),
          })
          .strict(),
        z
          .object({ columns: metricColumns.describe("Numeric columns; each column name is a metric key.") })
          .strict(),
      ])
      .default({ jsonb: "metrics" })
      .describe('Where the values come from: {"jsonb": "metrics"} or {"columns": ["temp_c", "rh"]}.'),
    groupColumn: identifier.default("device_id").describe("Group column in the target table."),
    backfillBatchHours: z
      .number()
      .int()
      .min(1)
      .max(24 * 31)
      .default(24)
      .describe("Hours recomputed per transaction during the first run and --from/--to rebuilds."),
    batchPauseMs: z.number().int().min(0).max(60_000).default(20).describe("Pause between backfill batches."),
    timeBudgetMs: timeBudgetMs.describe(
      "Backfill stops after this long; the next run resumes where it stopped.",
    ),
  })
  .strict();

export const TablePolicySchema = z
  .object({
    table: qualifiedTable.describe(
      'Partitioned table to manage, "schema.table" (schema defaults to public).',
    ),
    timeColumn: identifier.describe("Partition key column: timestamptz, or timestamp (treated as UTC)."),
    interval: z.enum(INTERVALS).default("monthly").describe("Width of one partition, in UTC."),
    premake: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(3)
      .describe("Partitions kept ready beyond the current one, whether or not data arrives."),
    naming: z
      .string()
      .optional()
      .describe(
        "Child name template: {table} {YYYY} {MM} {DD} {HH} {Q} {IYYY} {WW}. Default per interval, e.g. {table}_p{YYYY}{MM}.",
      ),
    defaultPartition: z
      .boolean()
      .default(true)
      .describe(
        "Keep a DEFAULT partition (created if missing) so out-of-range rows are stored, not rejected.",
      ),
    lockTimeoutMs: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(2_000)
      .describe("lock_timeout for each DDL attempt: the longest ingestion can queue behind us."),
    retryBudgetMs: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(60_000)
      .describe("Total time to keep retrying a DDL that cannot get its lock, with backoff and jitter."),
    maxRescueRows: z
      .number()
      .int()
      .min(0)
      .max(1_000_000_000)
      .optional()
      .describe(
        "Most rows partition-manager moves out of the DEFAULT partition for one new partition (default 50000). The move blocks every reader and writer of the table until it ends (about 1 s per 75,000 rows); above this the rescue is refused (CRIT, exit 2) and left to a deliberate run (docs/runbooks/partition-manager.md).",
      ),
    partitioned: z
      .boolean()
      .default(true)
      .describe(
        'false for a plain table: partition-manager leaves it alone, retention deletes expired rows in batches (not in mode "export").',
      ),
    retention: RetentionPolicySchema.optional().describe("Expire old data (the retention job)."),
    rollup: RollupPolicySchema.optional().describe(
      "Roll this table up into hourly buckets (the rollup-hourly job). Needs the ingest_xid column.",
    ),
  })
  .strict()
  .superRefine((policy, ctx) => {
    // A plain table's expired rows are deleted one by one, which mode "export" never does.
    if (!policy.partitioned && policy.retention?.mode === "export")
      ctx.addIssue({
        code: "custom",
        path: ["partitioned"],
        message:
          'mode "export" needs a partitioned table (it exports and removes whole partitions; a plain table\'s rows would be deleted without an export): partition the table, or use another retention mode',
      });
    // Runs even when `table` failed its own check (reported there): nothing to render then.
    if (typeof policy.table !== "string" || parseQualifiedName(policy.table) === undefined) return;
    const template = policy.naming ?? defaultNamingTemplate(policy.interval);
    if (policy.naming !== undefined) {
      const missing = requiredPlaceholders(policy.interval).filter((p) => !template.includes(p));
      if (missing.length > 0) {
        ctx.addIssue({
          code: "custom",
          path: ["naming"],
          message: `a ${policy.interval} template needs ${missing.join(", ")} so that every partition gets its own name`,
        });
        return;
      }
    }
    // The default template too: PostgreSQL silently truncates a longer name to 63 bytes, so a long
    // table name would make every child of a year collide in one truncated name.
    const sample = partitionName(template, tableName(policy.table), new Date(Date.UTC(2026, 11, 31, 23)));
    if (!isIdentifier(sample)) {
      ctx.addIssue({
        code: "custom",
        path: ["naming"],
        message:
          policy.naming === undefined
            ? `the default template "${template}" renders names like "${sample}" (${sample.length} characters), longer than PostgreSQL's 63; set "naming" to a shorter template, e.g. "${shortTemplateHint(policy.interval)}"`
            : `renders names like "${sample}", which is not a lower-case identifier of at most 63 characters`,
      });
    }
  })
  .transform((policy) => ({ ...policy, naming: policy.naming ?? defaultNamingTemplate(policy.interval) }));

export const PolicyFileSchema = z
  .object({
    $schema: z.string().optional(),
    tables: z.array(TablePolicySchema).min(1, "list at least one table"),
  })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.tables.forEach((t, i) => {
      if (seen.has(t.table)) {
        ctx.addIssue({ code: "custom", path: ["tables", i, "table"], message: `${t.table} is listed twice` });
      }
      seen.add(t.table);
    });
    checkRollupTargets(file.tables, ctx);
  });

export type TablePolicy = z.output<typeof TablePolicySchema>;
export type RetentionPolicy = z.output<typeof RetentionPolicySchema>;
export type RollupPolicy = z.output<typeof RollupPolicySchema>;
export type PolicyFile = z.output<typeof PolicyFileSchema>;

/**
 * The policy's table as parts. `table` was validated as one or two plain lower-case identifiers
 * (no dots or quotes inside a part), so reading it back into parts is unambiguous.
 */
export function policyTable(policy: { readonly table: string }): QualifiedName {
  return parseQualifiedName(policy.table)!;
}

/** The policy's rollup target as parts (validated like `table`). */
export function rollupTarget(rollup: { readonly target: string }): QualifiedName {
  return parseQualifiedName(rollup.target)!;
}

function shortTemplateHint(interval: (typeof INTERVALS)[number]): string {
  return defaultNamingTemplate(interval).replace("{table}", "t");
}

function tableName(qualified: string): string {
  return parseQualifiedName(qualified)!.name;
}
