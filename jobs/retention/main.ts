// Cloud Run entrypoint for the retention job: `node dist/retention.mjs [options]` (or `--version`).
import { runEntry } from "../entry.ts";

await runEntry("retention", process.argv.slice(2));
