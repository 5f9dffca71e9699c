// Process plumbing shared by every entrypoint: the exit code once the job settles (EXIT: 0 ok or
// skipped, 1 failed, 2 bad config, usage or refused; `status` adds 3, could not check),
// SIGTERM/SIGINT turned into an AbortSignal that jobs check between actions, and an unref()'d
// watchdog so a stuck socket cannot keep a finished job alive (Cloud Run would bill it until the task
// timeout and then report a failure).
//
// Where things are printed: JSON log records (Cloud Logging; the default when stdout is not a
// terminal) all go to stdout, errors included. With text logs (a terminal), this plumbing's own
// diagnostics go to stderr: usage and configuration errors as plain lines (a usage error with the
// command's usage), a failure or a signal as a log line.
import { EXIT, type ExitCode, isConfigError } from "../shared/config/errors.ts";
import { createLogger, type Logger } from "../shared/log/logger.ts";
import { UsageError } from "./commands/args.ts";

const SHUTDOWN_GRACE_MS = 10_000;

/** `status` could not reach a verdict (no connection, a failed query): neither OK nor CRIT. */
export const EXIT_COULD_NOT_CHECK = 3;

/** Thrown by a check (status) that could not be carried out; the process exits 3. */
export class CouldNotCheck extends Error {
  override readonly name = "CouldNotCheck";
  readonly exitCode = EXIT_COULD_NOT_CHECK;
}

export interface MainContext {
  signal: AbortSignal;
  log: Logger;
}

/**
 * `--log-format text|json` when given, wherever it stands; else JSON with `--json` or when stdout
 * is not a terminal (Cloud Run, a pipe); text on a terminal. A value that is neither is left to the
 * command's own parse, which refuses it (exit 2).
 */
export function logFormat(
  argv: readonly string[],
  stdout: { isTTY?: boolean } = process.stdout,
): "json" | "text" {
  let explicit: "json" | "text" | undefined;
  argv.forEach((arg, i) => {
    const value =
      arg === "--log-format" ? argv[i + 1] : arg.startsWith("--log-format=") ? arg.slice(13) : undefined;
    if (value === "json" || value === "text") explicit = value;
  });
  return explicit ?? (argv.includes("--json") || !stdout.isTTY ? "json" : "text");
}

export function runMain(
  job: string,
  argv: readonly string[],
  body: (ctx: MainContext) => Promise<ExitCode>,
): void {
  const controller = new AbortController();
  const format = logFormat(argv);
  const verbose = argv.includes("--verbose");
  const log = createLogger({ job, format, verbose });
  // On a terminal, our own warnings and errors go to stderr; JSON records all stay on stdout.
  const diagnostics = format === "text" ? createLogger({ job, format, verbose, out: process.stderr }) : log;
  const onSignal = (sig: string) => {
    if (controller.signal.aborted) {
      diagnostics.warn(`second ${sig}: exiting now`);
      process.exit(EXIT.failed);
    }
    diagnostics.warn(`${sig} received: finishing the current step, then stopping`);
    controller.abort();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  body({ signal: controller.signal, log })
    .catch((error: unknown): number => {
      if (isConfigError(error)) {
        if (format === "json") log.error(error.message, { exitCode: EXIT.usage });
        else process.stderr.write(readableConfigError(job, error));
        return EXIT.usage;
      }
      if (error instanceof CouldNotCheck) {
        diagnostics.error(`could not check: ${error.message}`, {
          exitCode: EXIT_COULD_NOT_CHECK,
          error: error.cause ?? error,
        });
        return EXIT_COULD_NOT_CHECK;
      }
      diagnostics.error(`failed: ${(error as Error)?.message ?? String(error)}`, {
        exitCode: EXIT.failed,
        error,
      });
      return EXIT.failed;
    })
    .then((code) => {
      process.exitCode = code;
      setTimeout(() => {
        process.stderr.write(
          `telemetry-jobs: still open ${SHUTDOWN_GRACE_MS} ms after finishing; forcing exit\n`,
        );
        process.exit(code);
      }, SHUTDOWN_GRACE_MS).unref();
    });
}

/** A configuration or usage error as a terminal shows it: no timestamp, no fields. */
export function readableConfigError(job: string, error: Error): string {
  if (error instanceof UsageError) {
    const usage = error.usage ? `${error.usage}\n` : "";
    return `telemetry-jobs ${error.command}: ${error.problem}\n${usage}Run \`telemetry-jobs ${error.command} --help\` for the options.\n`;
  }
  return `telemetry-jobs ${job}: ${error.message}\n`;
}
