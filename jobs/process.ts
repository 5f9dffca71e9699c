// Process plumbing shared by every entrypoint: exit codes (0 ok/skipped, 1 failed, 2 bad config or
// usage), SIGTERM/SIGINT turned into an AbortSignal that jobs check between actions, and an
// unref()'d watchdog so a stuck socket cannot keep a finished job alive (Cloud Run would bill it
// until the task timeout and then report a failure).
import { isConfigError } from "../shared/config/errors.ts";
import { createLogger, type Logger } from "../shared/log/logger.ts";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
const SHUTDOWN_GRACE_MS = 10_000;

export interface MainContext {
  signal: AbortSignal;
  log: Logger;
}

function loggerFor(job: string, argv: readonly string[]): Logger {
  const json = argv.includes("--json");
  return createLogger({ job, ...(json ? { format: "json" } : {}), verbose: argv.includes("--verbose") });
}

export function runMain(
  job: string,
  argv: readonly string[],
  body: (ctx: MainContext) => Promise<number>,
): void {
  const controller = new AbortController();
  const log = loggerFor(job, argv);
  const onSignal = (sig: string) => {
    if (controller.signal.aborted) {
      log.warn(`second ${sig}: exiting now`);
      process.exit(EXIT_FAILED);
    }
    log.warn(`${sig} received: finishing the current step, then stopping`);
    controller.abort();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  body({ signal: controller.signal, log })
    .catch((error: unknown) => {
      if (isConfigError(error)) {
        log.error(error.message, { exitCode: EXIT_USAGE });
        return EXIT_USAGE;
      }
      log.error(`failed: ${(error as Error)?.message ?? String(error)}`, { exitCode: EXIT_FAILED, error });
      return EXIT_FAILED;
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
