// Mode "export"'s part of a retention policy: the export block, and the combinations that would
// let a policy look like it exports while it does nothing, or loses rows it never exported.
import path from "node:path";
import { z } from "zod";

/** The cold tier's file format and compression: what the Parquet writer (shared/cold) produces. */
export const EXPORT_FORMATS = ["parquet"] as const;
export const EXPORT_COMPRESSIONS = ["zstd"] as const;

export const ExportPolicySchema = z
  .object({
    to: z
      .string()
      .refine((v) => path.isAbsolute(v) && !v.includes("\0"), {
        message: 'must be an absolute directory path, e.g. "/mnt/cold"',
      })
      .describe(
        "Root directory of the cold tier (in production, the Cloud Storage bucket mounted into the job). Files go to <to>/<schema>.<table>/<key>_start=<ISO>/.",
      ),
    format: z.enum(EXPORT_FORMATS).default("parquet").describe("File format of the exported partitions."),
    compression: z
      .enum(EXPORT_COMPRESSIONS)
      .default("zstd")
      .describe("Compression of the Parquet pages (the writer supports zstd only)."),
  })
  .strict();

/** The retention fields the checks below read. */
interface RetentionExportFields {
  readonly mode: string;
  readonly exactCutoff: boolean;
  readonly export?: unknown;
}

/** The retention block's superRefine: mode "export" and its block go together, without exactCutoff. */
export function checkExportRetention(retention: RetentionExportFields, ctx: z.RefinementCtx): void {
  if (retention.mode === "export" && retention.export === undefined)
    ctx.addIssue({
      code: "custom",
      path: ["export"],
      message:
        'is required with mode "export": add "export": { "to": "/absolute/dir" }, the directory the Parquet files go to',
    });
  // A block that does nothing would let a policy look like it exports when it only drops.
  if (retention.mode !== "export" && retention.export !== undefined)
    ctx.addIssue({
      code: "custom",
      path: ["export"],
      message: `is used only with mode "export" (mode is "${retention.mode}"): set "mode": "export" to export before dropping, or remove the block`,
    });
  // Rows deleted one by one are never exported: mode "export" removes only whole partitions.
  if (retention.mode === "export" && retention.exactCutoff)
    ctx.addIssue({
      code: "custom",
      path: ["exactCutoff"],
      message:
        'cannot be true with mode "export": rows deleted before the cutoff would be lost, never exported; remove it (the straddling partition is exported once it expires whole)',
    });
}
