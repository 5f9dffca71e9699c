// Cloud Run entrypoint for the rollup-hourly job: `node dist/rollup-hourly.mjs [options]`.
import { runCommand } from "../commands/index.ts";
import { runMain } from "../process.ts";

const argv = process.argv.slice(2);
runMain("rollup-hourly", argv, (ctx) => runCommand("rollup-hourly", argv, ctx));
