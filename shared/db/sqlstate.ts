// PostgreSQL error codes the code acts on, by name (the condition names of the manual's
// "PostgreSQL Error Codes" appendix, in camel case). Compare an error's code with these, never
// with a literal.
export const SQLSTATE = {
  /** 23505: a unique index or constraint refused a row. */
  uniqueViolation: "23505",
  /** 40001: a serializable transaction lost to a concurrent one. */
  serializationFailure: "40001",
  /** 40P01: this session was chosen to break a deadlock. */
  deadlockDetected: "40P01",
  /** 42501: the role lacks a privilege (or is not the owner). */
  insufficientPrivilege: "42501",
  /** 42P01: a relation named in the statement does not exist. */
  undefinedTable: "42P01",
  /** 42704: another named object (a type, a function's target, ...) does not exist. */
  undefinedObject: "42704",
  /** 55000: the object is not in the state the statement needs (e.g. a detach still pending). */
  objectNotInPrerequisiteState: "55000",
  /** 55P03: lock_timeout expired, or NOWAIT found the lock taken. */
  lockNotAvailable: "55P03",
} as const;

/** Errors worth another attempt after a pause: someone else holds the lock we need. */
const RETRYABLE_LOCK_ERRORS: readonly string[] = [
  SQLSTATE.lockNotAvailable,
  SQLSTATE.deadlockDetected,
  SQLSTATE.serializationFailure,
];

/** The SQLSTATE of a PostgreSQL error (node-postgres puts it in `code`); undefined for any other error. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * An error of ours that the lock retry loop treats as PostgreSQL's "lock not available": the
 * attempt rolls back and is retried after a backoff, as when lock_timeout fires.
 */
export function retryableLockError(message: string): Error {
  return Object.assign(new Error(message), { code: SQLSTATE.lockNotAvailable });
}

export function isRetryableLockError(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && RETRYABLE_LOCK_ERRORS.includes(code);
}
