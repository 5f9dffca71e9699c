// Cloud Run entrypoint for the migrate job: `node dist/migrate.mjs [options]`.
import { runCommand } from "../commands/index.ts";
import { runMain } from "../process.ts";

const argv = process.argv.slice(2);
runMain("migrate", argv, (ctx) => runCommand("migrate", argv, ctx));
