// npm run schema:policy: regenerates docs/policy.schema.json (a test fails when it is stale).
import { writeFileSync } from "node:fs";
import { policyJsonSchema } from "../shared/config/json-schema.ts";

const path = new URL("../docs/policy.schema.json", import.meta.url);
writeFileSync(path, `${JSON.stringify(policyJsonSchema(), null, 2)}\n`);
console.log(`wrote ${path.pathname}`);
