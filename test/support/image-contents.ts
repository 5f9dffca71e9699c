// What the container image holds (see Dockerfile): the bundles in dist/ and the production
// dependencies only, installed into an empty directory. Shared by the bundle test and
// bench/startup.ts so both measure exactly the image's contents.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The Dockerfile's install: no dev or optional dependencies (the PostgreSQL test binaries), no scripts. */
export const IMAGE_NPM_CI_ARGS = [
  "ci",
  "--omit=dev",
  "--omit=optional",
  "--ignore-scripts",
  "--no-audit",
  "--no-fund",
  "--prefer-offline",
];

/** Copies `root`/dist and the package files into a new temp dir and installs there; returns the dir. */
export function installImageContents(root: string, prefix: string, timeoutMs = 240_000): string {
  const app = mkdtempSync(join(tmpdir(), prefix));
  cpSync(join(root, "dist"), join(app, "dist"), { recursive: true });
  for (const f of ["package.json", "package-lock.json"]) cpSync(join(root, f), join(app, f));
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const install = spawnSync(npm, IMAGE_NPM_CI_ARGS, { cwd: app, encoding: "utf8", timeout: timeoutMs });
  if (install.status !== 0)
    throw new Error(
      `npm ${IMAGE_NPM_CI_ARGS.join(" ")} in ${app} failed:\n${install.stdout}\n${install.stderr}`,
    );
  return app;
}
