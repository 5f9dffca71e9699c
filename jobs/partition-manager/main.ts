// Cloud Run entrypoint for the partition-manager job: `node dist/partition-manager.mjs [options]`.
import { runCommand } from "../commands/index.ts";
import { runMain } from "../process.ts";

const argv = process.argv.slice(2);
runMain("partition-manager", argv, (ctx) => runCommand("partition-manager", argv, ctx));
