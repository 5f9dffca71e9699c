// Process plumbing shared by every entrypoint: the exit code once the job settles (EXIT: 0 ok or
// skipped, 1 failed, 2 bad config, usage or refused), SIGTERM/SIGINT turned into an AbortSignal
// that jobs check between actions, and an unref()'d watchdog so a stuck socket cannot keep a
// finished job alive (Cloud Run would bill it until the task timeout and then report a failure).
import { EXIT, type ExitCode, isConfigError } from "../shared/config/errors.ts";
import { createLogger, type Logger } from "../shared/log/logger.ts";

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
  body: (ctx: MainContext) => Promise<ExitCode>,
): void {
  const controller = new AbortController();
  const log = loggerFor(job, argv);
  const onSignal = (sig: string) => {
    if (controller.signal.aborted) {
      log.warn(`second ${sig}: exiting now`);
      process.exit(EXIT.failed);
    }
    log.warn(`${sig} received: finishing the current step, then stopping`);
    controller.abort();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  body({ signal: controller.signal, log })
    .catch((error: unknown) => {
      if (isConfigError(error)) {
        log.error(error.message, { exitCode: EXIT.usage });
        return EXIT.usage;
      }
      log.error(`failed: ${(error as Error)?.message ?? String(error)}`, { exitCode: EXIT.failed, error });
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
