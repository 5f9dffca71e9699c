// Cloud Run entrypoint for the retention job: `node dist/retention.mjs [options]`.
import { runCommand } from "../commands/index.ts";
import { runMain } from "../process.ts";

const argv = process.argv.slice(2);
runMain("retention", argv, (ctx) => runCommand("retention", argv, ctx));
