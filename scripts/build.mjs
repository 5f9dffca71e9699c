// One ESM bundle per entrypoint in dist/. Dependencies stay external: the image installs the
// production dependencies next to the bundles (pg's optional native bits, gRPC protos and the
// connector's own files do not bundle reliably).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { build } from "esbuild";

const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const entryPoints = { cli: "jobs/cli.ts" };
for (const job of readdirSync("jobs", { withFileTypes: true })) {
  if (job.isDirectory() && existsSync(`jobs/${job.name}/main.ts`))
    entryPoints[job.name] = `jobs/${job.name}/main.ts`;
}
const result = await build({
  entryPoints,
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  target: "node24",
  format: "esm",
  sourcemap: "linked",
  metafile: true,
  external: Object.keys(pkg.dependencies ?? {}),
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: "warning",
});
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  if (file.endsWith(".mjs")) console.log(`${file.padEnd(32)} ${(info.bytes / 1024).toFixed(1)} KiB`);
}
