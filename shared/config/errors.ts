// Usage and configuration errors: the job exits 2 before touching the database.

/** Process exit codes: done (or nothing to do), failed, and usage or configuration (or refused). */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly exitCode = EXIT.usage;
}

export function isConfigError(error: unknown): error is ConfigError {
  return error instanceof ConfigError;
}
