// The CLI's own surface, no database needed: --version (from source and from a bundle with no
// package.json beside it), usage errors on stderr, status's own --help, and status telling "could
// not check" (exit 3) from CRIT (1) and from a bad configuration (2).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
const POLICY = JSON.stringify({ tables: [{ table: "public.telemetry_points", timeColumn: "ts" }] });

function cli(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "jobs/cli.ts", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, DATABASE_URL: "", TELEMETRY_JOBS_CONFIG_JSON: "", ...env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

let bundleDir: string;
beforeAll(async () => {
  // The CLI bundled as scripts/build.mjs does, in a directory with no package.json anywhere above
  // it and no node_modules: the version comes from the bundle itself, and printing it loads no
  // dependency (the commands are chunks imported only when one runs).
  bundleDir = mkdtempSync(join(tmpdir(), "tj-cli-"));
  await build({
    entryPoints: { cli: join(ROOT, "jobs/cli.ts") },
    outdir: bundleDir,
    outExtension: { ".js": ".mjs" },
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    platform: "node",
    target: "node24",
    format: "esm",
    external: Object.keys(PKG.dependencies),
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: "warning",
  });
}, 60_000);
afterAll(() => {
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
});

describe("--version", () => {
  it.each([["--version"], ["-V"], ["version"]])("%s prints the package version, exit 0", (flag) => {
    const run = cli([flag]);
    expect(run).toMatchObject({ code: 0, stdout: `telemetry-jobs ${PKG.version}\n`, stderr: "" });
  });

  it("the bundle carries the version (no package.json, no node_modules next to it)", () => {
    const run = spawnSync(process.execPath, [join(bundleDir, "cli.mjs"), "--version"], {
      cwd: bundleDir,
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(`telemetry-jobs ${PKG.version}\n`);
  });
});

describe("usage errors go to stderr", () => {
  it("no command: the usage on stderr, nothing on stdout, exit 2; --help: the usage on stdout, exit 0", () => {
    const none = cli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toBe("");
    expect(none.stderr).toMatch(/^telemetry-jobs: no command given\n\nUsage: telemetry-jobs <command>/);
    const help = cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stderr).toBe("");
    expect(help.stdout).toMatch(/^Usage: telemetry-jobs <command>[\s\S]*--version/);
  });

  it("an unknown command: stderr, exit 2", () => {
    const run = cli(["statsu"]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/unknown command "statsu"/);
  });

  it("with JSON logs (Cloud Run), a usage error is an ERROR record on stdout pointing at --help", () => {
    const run = cli(["status", "--bogus", "--json"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe("");
    const record = JSON.parse(run.stdout.trim());
    expect(record).toMatchObject({ severity: "ERROR", exitCode: 2 });
    expect(record.message).toBe("status: Unknown option '--bogus'. See `telemetry-jobs status --help`.");
  });
});

describe("status", () => {
  it("--help lists status's own options and exit codes, and no --dry-run", () => {
    const run = cli(["status", "--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: telemetry-jobs status /);
    expect(run.stdout).toContain("--table NAME");
    expect(run.stdout).toContain("--json             the report as one JSON document");
    expect(run.stdout).not.toContain("--dry-run");
    expect(run.stdout).toMatch(/Exit codes:\n {2}0 .*\n {2}1 .*CRIT\n {2}2 .*\n {2}3 {2}could not check/);
    expect(cli(["status", "--dry-run", "--json"]).code).toBe(2);
  });

  it("an unreachable database: exit 3 (could not check), not 1 (CRIT)", () => {
    const run = cli(["status", "--json"], {
      DATABASE_URL: "postgres://nobody@127.0.0.1:1/nothing",
      TELEMETRY_JOBS_CONFIG_JSON: POLICY,
    });
    expect(run.code).toBe(3);
    const record = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
    expect(record).toMatchObject({ severity: "ERROR", exitCode: 3 });
    expect(record.message).toMatch(/^could not check: .*ECONNREFUSED/);
  });

  it("a bad policy is still exit 2, with the database unreachable too", () => {
    const run = cli(["status", "--json"], {
      DATABASE_URL: "postgres://nobody@127.0.0.1:1/nothing",
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [{ table: "t", timeColumn: "ts", premke: 1 }] }),
    });
    expect(run.code).toBe(2);
    expect(JSON.parse(run.stdout.trim()).message).toContain('unknown key "premke"; did you mean "premake"?');
  });
});
