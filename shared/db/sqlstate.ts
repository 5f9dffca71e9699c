// PostgreSQL error codes we act on, by name (see Appendix A of the PostgreSQL manual).
export const SQLSTATE = {
  checkViolation: "23514",
  lockNotAvailable: "55P03",
  deadlockDetected: "40P01",
  serializationFailure: "40001",
  duplicateTable: "42P07",
  duplicateObject: "42710",
  undefinedTable: "42P01",
  queryCanceled: "57014",
  objectInUse: "55006",
} as const;

/** Errors worth another attempt after a pause: someone else holds the lock we need. */
export const RETRYABLE_LOCK_ERRORS: readonly string[] = [
  SQLSTATE.lockNotAvailable,
  SQLSTATE.deadlockDetected,
  SQLSTATE.serializationFailure,
];

export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function isRetryableLockError(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && RETRYABLE_LOCK_ERRORS.includes(code);
}
