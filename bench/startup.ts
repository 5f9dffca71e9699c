// What the container image costs: bundle sizes, the size of the production dependencies installed
// next to them (what the Dockerfile's deps stage copies into the image), and how long each job takes
// from process start to its first query, started the way Cloud Run starts it (plain node, the bundle,
// production dependencies only, JSON logs to a pipe).
//
//   npx tsx bench/startup.ts          # about a minute on 2 cores; writes bench/results/startup.md
//
// Process start to first query is measured from the parent's spawn() to the first pg Client.query()
// call in the child, both read from CLOCK_MONOTONIC (process.hrtime), with a preloaded hook
// (bench/startup-hook.mjs) that wraps pg.Client; no change to jobs/ or shared/. It includes exec,
// Node's own start-up, loading the bundle and its dependencies, config parsing, and the TCP connection
// and authentication of the first session. Median of RUNS starts per job after one warm-up start,
// against an embedded PostgreSQL on the same machine (no network latency, no Cloud SQL connector:
// on Cloud Run add the connector's certificate and metadata round trips, and the container start).
// `telemetry-jobs --help` and `status --help` are measured to exit. Every figure sits next to
// `node -e 0` from the same run, so a busy machine shows as a slower baseline, not a slower CLI.
//
// The report keeps, verbatim, whatever follows HISTORY_MARK in the previous results file (figures
// of earlier runs, recorded by hand with the change they measure).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { installImageContents } from "../test/support/image-contents.ts";
import {
  createMigratedDatabase,
  markdownTable,
  median,
  percentile,
  serverSettings,
  withServer,
} from "./support.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const HOOK = fileURLToPath(new URL("./startup-hook.mjs", import.meta.url));
const RESULTS = join(ROOT, "bench", "results", "startup.md");
const RUNS = Number(process.env.STARTUP_RUNS ?? 9);
const HISTORY_MARK = "<!-- history: kept as is by bench/startup.ts -->";

const POLICY = {
  tables: [
    { table: "public.telemetry_points", timeColumn: "ts", premake: 3, retention: { keep: "24 months" } },
    { table: "public.telemetry_rollups_hourly", timeColumn: "bucket_ts", premake: 3 },
  ],
};

const JOBS = readdirSync(join(ROOT, "jobs"), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(ROOT, "jobs", d.name, "main.ts")))
  .map((d) => d.name)
  .sort();

/** Default arguments of each job, as in infra/modules/telemetry-jobs/main.tf. */
const ARGS: Record<string, string[]> = { migrate: ["up"] };

interface Start {
  connectMs: number | undefined;
  firstQueryMs: number | undefined;
  firstLogMs: number | undefined;
  exitMs: number;
  code: number | null;
}

function startOnce(
  app: string,
  script: string[],
  env: Record<string, string>,
  hook: boolean,
  expectedCode = 0,
): Promise<Start> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const since = (t: bigint) => Number(t - t0) / 1e6;
    const child = spawn(process.execPath, [...(hook ? ["--import", HOOK] : []), ...script], {
      cwd: app,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: app, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const marks: Record<string, bigint> = {};
    let firstLog: bigint | undefined;
    let stderr = "";
    child.stdout.on("data", () => {
      firstLog ??= process.hrtime.bigint();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      for (const m of stderr.matchAll(/^__startup__ (\w+) (\d+)$/gm)) marks[m[1]!] ??= BigInt(m[2]!);
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const exit = process.hrtime.bigint();
      if (code !== expectedCode) {
        reject(new Error(`${script.join(" ")} exited ${code}:\n${stderr.replace(/^__startup__.*\n/gm, "")}`));
        return;
      }
      resolve({
        connectMs: marks.connect ? since(marks.connect) : undefined,
        firstQueryMs: marks.query ? since(marks.query) : undefined,
        firstLogMs: firstLog ? since(firstLog) : undefined,
        exitMs: since(exit),
        code,
      });
    });
  });
}

async function measure(app: string, script: string[], env: Record<string, string>, hook = true) {
  await startOnce(app, script, env, hook); // warm-up: page cache, first compile of the bundle
  const starts: Start[] = [];
  for (let i = 0; i < RUNS; i++) starts.push(await startOnce(app, script, env, hook));
  const pick = (key: keyof Start) =>
    starts.map((s) => s[key]).filter((v): v is number => typeof v === "number");
  return {
    connect: median(pick("connectMs")),
    firstQuery: median(pick("firstQueryMs")),
    firstQueryP95: percentile(pick("firstQueryMs"), 95),
    firstLog: median(pick("firstLogMs")),
    exit: median(pick("exitMs")),
    exitP95: percentile(pick("exitMs"), 95),
  };
}

/** Apparent size (sum of file sizes) and file count of a directory tree. */
function treeSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    bytes += statSync(join(entry.parentPath, entry.name)).size;
    files++;
  }
  return { bytes, files };
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const msText = (v: number) => `${v.toFixed(0)} ms`;
const plus = (v: number) => `+${v.toFixed(0)} ms`;

/** HISTORY_MARK and what follows it in the previous report (just the mark if there is none). */
function keptHistory(): string {
  const previous = existsSync(RESULTS) ? readFileSync(RESULTS, "utf8") : "";
  const at = previous.indexOf(HISTORY_MARK);
  return at >= 0 ? previous.slice(at) : `${HISTORY_MARK}\n`;
}

async function main() {
  // 1. Bundles.
  const build = spawnSync(process.execPath, ["scripts/build.mjs"], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`build failed: ${build.stderr}`);
  const bundles = readdirSync(join(ROOT, "dist"))
    .filter((f) => f.endsWith(".mjs"))
    .sort()
    .map((f) => {
      const content = readFileSync(join(ROOT, "dist", f));
      const map = join(ROOT, "dist", `${f}.map`);
      return {
        file: f,
        bytes: content.length,
        gzip: gzipSync(content).length,
        map: existsSync(map) ? statSync(map).size : 0,
      };
    });
  // The chunks (code splitting) that the bundles import, each only when needed, as one row.
  const chunkDir = join(ROOT, "dist", "chunks");
  const chunkFiles = existsSync(chunkDir) ? readdirSync(chunkDir).filter((f) => f.endsWith(".mjs")) : [];
  if (chunkFiles.length > 0) {
    const total = { file: `chunks/ (${chunkFiles.length} files)`, bytes: 0, gzip: 0, map: 0 };
    for (const f of chunkFiles) {
      const content = readFileSync(join(chunkDir, f));
      total.bytes += content.length;
      total.gzip += gzipSync(content).length;
      const map = join(chunkDir, `${f}.map`);
      total.map += existsSync(map) ? statSync(map).size : 0;
    }
    bundles.push(total);
  }

  // 2. What the image holds: the bundles and production dependencies, in an empty directory.
  const app = installImageContents(ROOT, "tj-startup-");
  try {
    const modules = join(app, "node_modules");
    const total = treeSize(modules);
    const du = spawnSync("du", ["-sk", modules], { encoding: "utf8" }).stdout.split("\t")[0];
    const packages = readdirSync(modules).flatMap((name) =>
      name.startsWith("@")
        ? readdirSync(join(modules, name)).map((n) => `${name}/${n}`)
        : name.startsWith(".")
          ? []
          : [name],
    );
    const biggest = packages
      .map((name) => ({ name, ...treeSize(join(modules, name)) }))
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, 8);
    console.log(
      `production dependencies: ${mib(total.bytes)} in ${total.files} files, ${packages.length} packages`,
    );

    // 3. Start to first query, per job.
    const rows = await withServer("startup", async (server) => {
      const url = await createMigratedDatabase(server, "startup");
      const env = { DATABASE_URL: url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify(POLICY) };
      // Make every job a realistic no-op run: partitions exist already.
      await startOnce(app, ["dist/partition-manager.mjs"], env, false);
      const out: string[][] = [];
      const help: string[][] = [];
      const imports: string[][] = [];
      const node = await measure(app, ["-e", "0"], {}, false);
      help.push(["`node -e 0` (Node alone)", msText(node.exit), msText(node.exitP95), ""]);
      console.log(`node -e 0: exit ${msText(node.exit)}, p95 ${msText(node.exitP95)}`);
      for (const args of [["--help"], ["status", "--help"]]) {
        const r = await measure(app, ["dist/cli.mjs", ...args], {}, false);
        console.log(`cli ${args.join(" ")}: exit ${msText(r.exit)}, p95 ${msText(r.exitP95)}`);
        help.push([
          `\`telemetry-jobs ${args.join(" ")}\``,
          `**${msText(r.exit)}**`,
          msText(r.exitP95),
          plus(r.exit - node.exit),
        ]);
      }
      const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
      for (const dependency of Object.keys(pkg.dependencies ?? {}).sort()) {
        const r = await measure(
          app,
          ["--input-type=module", "-e", `await import(${JSON.stringify(dependency)})`],
          {},
          false,
        );
        imports.push([`\`import("${dependency}")\``, msText(r.exit), msText(r.exit - node.exit)]);
      }
      for (const job of JOBS) {
        const r = await measure(app, [`dist/${job}.mjs`, ...(ARGS[job] ?? [])], env);
        console.log(
          `${job}: first query ${msText(r.firstQuery)}, first log ${msText(r.firstLog)}, exit ${msText(r.exit)}`,
        );
        out.push([
          `\`${job}\` ${(ARGS[job] ?? []).join(" ")}`.trim(),
          msText(r.connect),
          `**${msText(r.firstQuery)}**`,
          msText(r.firstQueryP95),
          plus(r.firstQuery - node.exit),
          msText(r.firstLog),
          msText(r.exit),
        ]);
      }
      return { out, help, imports, node, major: server.major, settings: await serverSettings(server) };
    });

    // 4. Report.
    const report = [
      "# Start-up and size of the image's contents",
      "",
      `Measured by \`npx tsx bench/startup.ts\` on ${new Date().toISOString().slice(0, 10)}: Node ${process.version}, ` +
        `${cpus().length} cores (${cpus()[0]?.model.trim() ?? "unknown"}), embedded PostgreSQL ${rows.major} on the same machine (${rows.settings}).`,
      "",
      "## Bundles (`npm run build`)",
      "",
      markdownTable(
        ["bundle", "size", "gzip", "source map"],
        bundles.map((b) => [`dist/${b.file}`, kib(b.bytes), kib(b.gzip), kib(b.map)]),
      ),
      "",
      "## Production dependencies (what the image's `node_modules` holds)",
      "",
      "`npm ci --omit=dev --omit=optional --ignore-scripts` in an empty directory, as in the Dockerfile:",
      `**${mib(total.bytes)}** in ${total.files} files (${(Number(du) / 1024).toFixed(1)} MiB on disk, \`du -sk\`), ${packages.length} packages.`,
      "The largest:",
      "",
      markdownTable(
        ["package", "size", "files"],
        biggest.map((b) => [b.name, mib(b.bytes), String(b.files)]),
      ),
      "",
      `## Help (median and p95 of ${RUNS} starts after a warm-up, to exit)`,
      "",
      "`node dist/cli.mjs …` with no database and no policy, against `node -e 0` in the same run.",
      "",
      markdownTable(["command", "median", "p95", "added to Node alone"], rows.help),
      "",
      `## Process start to first query (median and p95 of ${RUNS} starts after a warm-up)`,
      "",
      "From `spawn()` in the parent to the child's first `pg.Client#connect()` / `#query()` call (CLOCK_MONOTONIC",
      "in both processes, via the preloaded `bench/startup-hook.mjs`), to the first stdout line, and to exit.",
      "Each job runs with its Cloud Run arguments on a migrated database whose partitions already exist (a",
      "no-op run, as most scheduled runs are).",
      "",
      `Node alone (\`node -e 0\`, same run): median ${msText(rows.node.exit)}, p95 ${msText(rows.node.exitP95)} to exit.`,
      "",
      markdownTable(
        ["job", "first connect", "first query", "p95", "added to Node alone", "first log line", "exit"],
        rows.out,
      ),
      "",
      "Where the time goes: importing each production dependency on its own (`node --input-type=module -e",
      "'await import(\"…\")'`, same median), and what that adds to Node alone:",
      "",
      markdownTable(["import", "exit", "added to Node alone"], rows.imports),
      "",
      "Not included: pulling and starting the container, and the Cloud SQL connector's set-up (it fetches",
      "an ephemeral certificate and the instance's metadata from the Cloud SQL Admin API before the first",
      "connection), which are outside the process and depend on the network.",
      "",
      "## Earlier runs",
      "",
      keptHistory(),
    ].join("\n");
    mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
    writeFileSync(RESULTS, report);
    console.log(`\nwritten to ${RESULTS}`);
  } finally {
    rmSync(app, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
