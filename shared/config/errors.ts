// Usage and configuration errors: the job exits 2 before touching the database.
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly exitCode = 2;
}

export function isConfigError(error: unknown): error is ConfigError {
  return error instanceof ConfigError;
}
