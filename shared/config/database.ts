// Database connection settings from the environment: either DATABASE_URL, or Cloud SQL through the
// connector (INSTANCE_CONNECTION_NAME + DB_USER + DB_NAME, IAM database authentication by default).
import { z } from "zod";

export const IP_TYPES = ["PUBLIC", "PRIVATE", "PSC"] as const;
export const AUTH_TYPES = ["IAM", "PASSWORD"] as const;

/** How long opening one connection may take when DB_CONNECT_TIMEOUT_MS is not set. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export type DatabaseSettings = (
  | { readonly kind: "url"; readonly url: string }
  | {
      readonly kind: "cloud-sql";
      readonly instanceConnectionName: string;
      readonly user: string;
      readonly database: string;
      readonly ipType: (typeof IP_TYPES)[number];
      readonly authType: (typeof AUTH_TYPES)[number];
      readonly password?: string;
    }
) & {
  /** DB_CONNECT_TIMEOUT_MS, when set (else DEFAULT_CONNECT_TIMEOUT_MS). */
  readonly connectTimeoutMs?: number;
};

const EnvSchema = z
  .object({
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must start with postgres:// or postgresql://")
      .optional(),
    INSTANCE_CONNECTION_NAME: z
      .string()
      .regex(/^[a-z0-9-.:]+:[a-z0-9-]+:[a-z0-9-]+$/, 'must look like "project:region:instance"')
      .optional(),
    DB_USER: z.string().min(1).optional(),
    DB_NAME: z.string().min(1).optional(),
    DB_IP_TYPE: z.enum(IP_TYPES).default("PRIVATE"),
    DB_AUTH: z.enum(AUTH_TYPES).default("IAM"),
    DB_PASSWORD: z.string().min(1).optional(),
    // A private IP that drops packets (a missing VPC route or firewall rule) would otherwise hang
    // the first connection until the task's timeout, with nothing in the logs.
    DB_CONNECT_TIMEOUT_MS: z
      .string()
      .regex(/^\d+$/, "must be a whole number of milliseconds, e.g. 10000")
      .transform(Number)
      .refine((n) => n >= 100 && n <= 300_000, { message: "must be from 100 to 300000 (milliseconds)" })
      .optional(),
  })
  .superRefine((env, ctx) => {
    if (env.DATABASE_URL && env.INSTANCE_CONNECTION_NAME) {
      ctx.addIssue({
        code: "custom",
        path: ["DATABASE_URL"],
        message: "set either DATABASE_URL or INSTANCE_CONNECTION_NAME, not both",
      });
    }
    if (!env.DATABASE_URL && !env.INSTANCE_CONNECTION_NAME) {
      ctx.addIssue({
        code: "custom",
        path: ["DATABASE_URL"],
        message:
          "no database configured: set DATABASE_URL=postgres://..., or INSTANCE_CONNECTION_NAME, DB_USER and DB_NAME for Cloud SQL",
      });
    }
    if (env.INSTANCE_CONNECTION_NAME) {
      for (const key of ["DB_USER", "DB_NAME"] as const) {
        if (!env[key])
          ctx.addIssue({ code: "custom", path: [key], message: "is required with INSTANCE_CONNECTION_NAME" });
      }
      if (env.DB_AUTH === "PASSWORD" && !env.DB_PASSWORD) {
        ctx.addIssue({
          code: "custom",
          path: ["DB_PASSWORD"],
          message: "is required with DB_AUTH=PASSWORD (inject it from Secret Manager)",
        });
      }
      if (env.DB_AUTH === "IAM" && env.DB_PASSWORD) {
        ctx.addIssue({
          code: "custom",
          path: ["DB_PASSWORD"],
          message: "must not be set with DB_AUTH=IAM (IAM database authentication uses no password)",
        });
      }
    }
  });

export function parseDatabaseEnv(
  env: NodeJS.ProcessEnv,
): { success: true; data: DatabaseSettings } | { success: false; error: z.ZodError } {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) return { success: false, error: parsed.error };
  const e = parsed.data;
  const timeout = e.DB_CONNECT_TIMEOUT_MS !== undefined ? { connectTimeoutMs: e.DB_CONNECT_TIMEOUT_MS } : {};
  if (e.DATABASE_URL) return { success: true, data: { kind: "url", url: e.DATABASE_URL, ...timeout } };
  return {
    success: true,
    data: {
      kind: "cloud-sql",
      instanceConnectionName: e.INSTANCE_CONNECTION_NAME!,
      user: e.DB_USER!,
      database: e.DB_NAME!,
      ipType: e.DB_IP_TYPE,
      authType: e.DB_AUTH,
      ...(e.DB_PASSWORD ? { password: e.DB_PASSWORD } : {}),
      ...timeout,
    },
  };
}

/** A connection description safe to log (no password). */
export function describeDatabase(settings: DatabaseSettings): string {
  if (settings.kind === "cloud-sql") {
    return `cloud-sql ${settings.instanceConnectionName} db=${settings.database} user=${settings.user} ip=${settings.ipType} auth=${settings.authType}`;
  }
  try {
    const u = new URL(settings.url);
    return `${u.protocol}//${u.username || "(default user)"}@${u.host}${u.pathname}`;
  } catch {
    return "DATABASE_URL (unparseable)";
  }
}
