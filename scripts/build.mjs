// One ESM bundle per entrypoint in dist/, plus shared chunks in dist/chunks/ (code splitting): each
// command's module is a dynamic import in jobs/commands/index.ts, and with splitting it becomes a
// chunk that is loaded, with the external packages it imports, only when that command runs (without
// splitting esbuild would inline it and hoist its external imports to the top of every bundle).
// kysely and zod are bundled: plain JavaScript with no files of their own to read at run time, and
// one tree-shaken chunk loads much faster than their hundreds of modules (kysely alone took about
// 100 ms to import). The other dependencies stay external, installed next to the bundles in the
// image: pg's optional native bits, gRPC protos and the connector's own files do not bundle
// reliably, and bench/startup-hook.mjs wraps the pg that node_modules holds.
//
// The logger needs only the Entry class of @google-cloud/logging (it formats the JSON line Cloud
// Logging reads). The package's index also loads its gRPC API client, about 170 ms on every start,
// even `--help`; the bundles import Entry from its own module instead (still external).
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { build } from "esbuild";

const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const BUNDLED = new Set(["kysely", "zod"]);
const LOGGING_ENTRY = "@google-cloud/logging/build/src/entry.js";

/** `import { Entry } from "@google-cloud/logging"` -> LOGGING_ENTRY; any other import of it fails the build. */
const loggingEntryOnly = {
  name: "logging-entry-only",
  setup(b) {
    b.onResolve({ filter: /^@google-cloud\/logging$/ }, (args) => {
      const source = readFileSync(args.importer, "utf8");
      const imports = [
        ...source.matchAll(/import\s+(?!type\s)(\{[^}]*\}|[^;]*?)\s*from\s*"@google-cloud\/logging"/g),
      ];
      if (!imports.every(([, names]) => /^\{\s*Entry\s*\}$/.test(names)))
        return {
          errors: [{ text: `${args.importer}: only { Entry } may be imported from @google-cloud/logging` }],
        };
      return { path: LOGGING_ENTRY, external: true };
    });
  },
};
const entryPoints = { cli: "jobs/cli.ts" };
for (const job of readdirSync("jobs", { withFileTypes: true })) {
  if (job.isDirectory() && existsSync(`jobs/${job.name}/main.ts`))
    entryPoints[job.name] = `jobs/${job.name}/main.ts`;
}
const result = await build({
  entryPoints,
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  splitting: true,
  platform: "node",
  target: "node24",
  format: "esm",
  sourcemap: "linked",
  metafile: true,
  external: Object.keys(pkg.dependencies ?? {}).filter((name) => !BUNDLED.has(name)),
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  plugins: [loggingEntryOnly],
  logLevel: "warning",
});
// Chunk names carry a content hash: drop the chunks of earlier builds, so that dist/ (which the
// image copies whole) holds only what these bundles import.
const written = new Set(Object.keys(result.metafile.outputs).map((file) => file.replace(/^dist\//, "")));
if (existsSync("dist/chunks")) {
  for (const file of readdirSync("dist/chunks")) {
    if (!written.has(`chunks/${file}`)) rmSync(`dist/chunks/${file}`);
  }
}
let chunkBytes = 0;
let chunks = 0;
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  if (!file.endsWith(".mjs")) continue;
  if (file.startsWith("dist/chunks/")) {
    chunkBytes += info.bytes;
    chunks++;
  } else console.log(`${file.padEnd(32)} ${(info.bytes / 1024).toFixed(1)} KiB`);
}
console.log(`${`dist/chunks/ (${chunks} files)`.padEnd(32)} ${(chunkBytes / 1024).toFixed(1)} KiB`);
