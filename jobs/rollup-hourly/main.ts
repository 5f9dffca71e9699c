// Cloud Run entrypoint for the rollup-hourly job: `node dist/rollup-hourly.mjs [options]` (or `--version`).
import { runEntry } from "../entry.ts";

await runEntry("rollup-hourly", process.argv.slice(2));
