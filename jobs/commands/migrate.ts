import { ConfigError } from "../../shared/config/errors.ts";
import { loadDatabaseSettings } from "../../shared/config/load.ts";
import { createMigrator, migrationStatus, throwIfFailed } from "../../shared/migrate/migrator.ts";
import type { MainContext } from "../process.ts";
import { parseCommandArgs } from "./args.ts";
import { convert } from "./convert.ts";
import { openDatabase } from "./environment.ts";

export const HELP = `Usage: telemetry-jobs migrate <up|down|status> [--dry-run] [--json]
       telemetry-jobs migrate convert [PHASE] --table NAME [options]

  up       apply every pending migration (Kysely Migrator; its lock serialises concurrent deploys)
  down     revert the most recent migration
  status   list migrations and when each was applied
  convert  turn a live unpartitioned table into a partitioned one (\`migrate convert --help\`)

  --dry-run   with up/down: list what would run, change nothing

Database from the environment (DATABASE_URL, or INSTANCE_CONNECTION_NAME + DB_USER + DB_NAME).
Exit codes: 0 done, 1 a migration failed, 2 bad usage or configuration.`;

const FLAGS = {
  "dry-run": { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  verbose: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

export async function migrate(argv: readonly string[], ctx: MainContext): Promise<number> {
  const at = argv.findIndex((a) => !a.startsWith("-"));
  if (argv[at] === "convert") return await convert([...argv.slice(0, at), ...argv.slice(at + 1)], ctx);
  const { log } = ctx;
  const { values, positionals } = parseCommandArgs("migrate", argv, FLAGS, true);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const verb = positionals[0] ?? "up";
  if (!["up", "down", "status"].includes(verb) || positionals.length > 1) {
    throw new ConfigError(
      `migrate: unknown subcommand "${positionals.join(" ")}"; use up, down, status or convert`,
    );
  }
  const database = await openDatabase({ database: loadDatabaseSettings(process.env) }, "migrate", log);
  try {
    const before = await migrationStatus(database.db);
    const pending = before.filter((m) => !m.executedAt).map((m) => m.name);
    const applied = before.filter((m) => m.executedAt).map((m) => m.name);
    if (verb === "status") {
      for (const m of before)
        log.info(`${m.executedAt ? "applied" : "pending"} ${m.name}`, {
          migration: m.name,
          executedAt: m.executedAt,
        });
      log.notice(`${applied.length} applied, ${pending.length} pending`, {
        applied: applied.length,
        pending: pending.length,
      });
      return 0;
    }
    if (values["dry-run"]) {
      const would = verb === "up" ? pending : applied.slice(-1);
      log.notice(`dry run: would migrate ${verb}: ${would.join(", ") || "nothing"}`, { migrations: would });
      return 0;
    }
    const migrator = createMigrator(database.db);
    const result = verb === "up" ? await migrator.migrateToLatest() : await migrator.migrateDown();
    for (const r of result.results ?? [])
      log.info(`${r.direction} ${r.migrationName}: ${r.status}`, {
        migration: r.migrationName,
        status: r.status,
      });
    throwIfFailed(result);
    log.notice(`migrate ${verb} done`, {
      event: "run_summary",
      job: "migrate",
      status: "ok",
      migrations: (result.results ?? []).map((r) => r.migrationName),
    });
    return 0;
  } finally {
    await database.close();
  }
}
