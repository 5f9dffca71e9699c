// Preloaded by bench/startup.ts (`node --import ./bench/startup-hook.mjs dist/<job>.mjs`): writes to
// stderr the CLOCK_MONOTONIC instant (process.hrtime.bigint(), the same clock in every process on the
// machine) of the first connection attempt and of the first query of any pg client. The bundles keep
// pg external, so this is the same pg module instance they use; nothing in jobs/ or shared/ changes.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(pathToFileURL(`${process.cwd()}/`));
const pg = require("pg");
const marks = new Set();

function mark(name) {
  if (marks.has(name)) return;
  marks.add(name);
  process.stderr.write(`__startup__ ${name} ${process.hrtime.bigint()}\n`);
}

for (const method of ["connect", "query"]) {
  const original = pg.Client.prototype[method];
  pg.Client.prototype[method] = function (...args) {
    mark(method);
    return original.apply(this, args);
  };
}
