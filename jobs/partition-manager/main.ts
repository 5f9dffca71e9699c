// Cloud Run entrypoint for the partition-manager job: `node dist/partition-manager.mjs [options]` (or `--version`).
import { runEntry } from "../entry.ts";

await runEntry("partition-manager", process.argv.slice(2));
