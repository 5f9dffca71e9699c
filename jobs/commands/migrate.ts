import type { MigrationResultSet } from "kysely/migration";
import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import { loadDatabaseSettings } from "../../shared/config/load.ts";
import type { Logger } from "../../shared/log/logger.ts";
import {
  createMigrator,
  type MigrationSet,
  migrationStatus,
  throwIfFailed,
} from "../../shared/migrate/migrator.ts";
import type { MainContext } from "../process.ts";
import { LOG_FLAGS, parseCommandArgs } from "./args.ts";
import { convert } from "./convert.ts";
import { openDatabase } from "./environment.ts";

const HELP = `Usage: telemetry-jobs migrate <up|down|status> [--with-starter-schema] [--dry-run] [--json]
       telemetry-jobs migrate convert [PHASE] --table NAME [options]

  up       apply every pending migration of the product's own schema, telemetry_jobs (bookkeeping,
           functions); nothing outside it is created, altered or dropped (Kysely Migrator; its lock
           serialises concurrent deploys)
  down     revert the most recent migration of telemetry_jobs
  status   list migrations and when each was applied
  convert  turn a live unpartitioned table into a partitioned one (\`migrate convert --help\`)

  --with-starter-schema  also the starter telemetry tables in public (devices, telemetry_points,
                         telemetry_rollups_hourly, telemetry_hourly_series()), for a new project
                         with no telemetry tables of its own, and the demo. up: after telemetry_jobs;
                         down: reverts the most recent starter migration first (reverting
                         starter_0001_tables drops those tables and their rows)
  --dry-run              with up/down: list what would run, change nothing
  --log-format text|json readable lines (default on a terminal) or JSON lines (default otherwise);
                         --json is the same as --log-format json

Database from the environment (DATABASE_URL, or INSTANCE_CONNECTION_NAME + DB_USER + DB_NAME).
Exit codes: 0 done, 1 a migration failed, 2 bad usage or configuration.`;

const FLAGS = {
  "dry-run": { type: "boolean", default: false },
  "with-starter-schema": { type: "boolean", default: false },
  ...LOG_FLAGS,
  help: { type: "boolean", short: "h", default: false },
} as const;

type Verb = "up" | "down" | "status";
type Listing = Awaited<ReturnType<typeof migrationStatus>>;
type Database = Awaited<ReturnType<typeof openDatabase>>;

const pendingOf = (list: Listing) => list.filter((m) => !m.executedAt).map((m) => m.name);
const appliedOf = (list: Listing) => list.filter((m) => m.executedAt).map((m) => m.name);

export async function migrate(argv: readonly string[], ctx: MainContext): Promise<ExitCode> {
  const at = argv.findIndex((a) => !a.startsWith("-"));
  if (argv[at] === "convert") return await convert([...argv.slice(0, at), ...argv.slice(at + 1)], ctx);
  const { log } = ctx;
  const { values, positionals } = parseCommandArgs("migrate", argv, FLAGS, true, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const verb = positionals[0] ?? "up";
  if (!isVerb(verb) || positionals.length > 1) {
    throw new ConfigError(
      `migrate: unknown subcommand "${positionals.join(" ")}"; use up, down, status or convert`,
    );
  }
  const database = await openDatabase({ database: loadDatabaseSettings(process.env) }, "migrate", log);
  try {
    const starterSchema = values["with-starter-schema"];
    const product = await migrationStatus(database.db, "product");
    const starter = await migrationStatus(database.db, "starter");
    if (verb === "status") {
      reportStatus(log, product, starter, starterSchema);
      return EXIT.ok;
    }
    // down reverts the starter schema's migrations first (they use the product's), and only when asked.
    const downSet: MigrationSet = starterSchema && appliedOf(starter).length > 0 ? "starter" : "product";
    if (values["dry-run"]) {
      const would =
        verb === "up"
          ? [...pendingOf(product), ...(starterSchema ? pendingOf(starter) : [])]
          : appliedOf(downSet === "starter" ? starter : product).slice(-1);
      log.notice(`dry run: would migrate ${verb}: ${would.join(", ") || "nothing"}`, { migrations: would });
      return EXIT.ok;
    }
    const ran =
      verb === "up"
        ? await migrateUp(database, log, starterSchema)
        : await applySet(database, log, downSet, (m) => m.migrateDown());
    log.notice(`migrate ${verb} done`, {
      event: "run_summary",
      job: "migrate",
      status: "ok",
      migrations: ran,
    });
    return EXIT.ok;
  } finally {
    await database.close();
  }
}

function isVerb(value: string): value is Verb {
  return value === "up" || value === "down" || value === "status";
}

/** The product's migrations, then the starter schema's when it is installed or asked for. */
function reportStatus(log: Logger, product: Listing, starter: Listing, starterSchema: boolean): void {
  const starterInstalled = starter.some((m) => m.executedAt);
  const listed = starterSchema || starterInstalled ? [...product, ...starter] : product;
  for (const m of listed)
    log.info(`${m.executedAt ? "applied" : "pending"} ${m.name}`, {
      migration: m.name,
      executedAt: m.executedAt,
    });
  if (!starterSchema && !starterInstalled)
    log.info("starter schema not installed (migrate up --with-starter-schema makes it, for a new project)");
  const applied = appliedOf(listed).length;
  const pending = pendingOf(listed).length;
  log.notice(`${applied} applied, ${pending} pending`, { applied, pending });
}

/** Runs one set's migrations, logging each; throws when one failed. Returns the names that ran. */
async function applySet(
  database: Database,
  log: Logger,
  set: MigrationSet,
  run: (m: ReturnType<typeof createMigrator>) => Promise<MigrationResultSet>,
): Promise<string[]> {
  const result = await run(createMigrator(database.db, set));
  const ran: string[] = [];
  for (const r of result.results ?? []) {
    log.info(`${r.direction} ${r.migrationName}: ${r.status}`, {
      migration: r.migrationName,
      status: r.status,
    });
    if (r.status === "Success") ran.push(r.migrationName);
  }
  throwIfFailed(result);
  return ran;
}

async function migrateUp(database: Database, log: Logger, starterSchema: boolean): Promise<string[]> {
  const ran = await applySet(database, log, "product", (m) => m.migrateToLatest());
  if (starterSchema)
    return [...ran, ...(await applySet(database, log, "starter", (m) => m.migrateToLatest()))];
  // A starter schema that is installed but behind (a release added a starter migration, or the
  // database was migrated by a release before 0007): it is not changed without the option.
  const now = await migrationStatus(database.db, "starter");
  const behind = now.filter((m) => !m.executedAt);
  if (behind.length > 0 && behind.length < now.length)
    log.warn(
      `the starter schema is installed but ${behind.length} of its migrations are pending (${behind.map((m) => m.name).join(", ")}): run migrate up --with-starter-schema to apply them`,
      { pending: behind.map((m) => m.name) },
    );
  return ran;
}
