// Cloud Run entrypoint for the migrate job: `node dist/migrate.mjs [options]` (or `--version`).
import { runEntry } from "../entry.ts";

await runEntry("migrate", process.argv.slice(2));
