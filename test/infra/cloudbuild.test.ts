// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" strings here are Terraform and Cloud Build expressions, not JS templates.
// What must stay true of cloudbuild.yaml, and that the job names in Terraform, Cloud Build and the
// docs agree.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { localReference, readTerraform } from "./hcl.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface Step {
  id: string;
  name: string;
  entrypoint?: string;
  args?: string[];
  env?: string[];
  waitFor?: string[];
}

let build: { substitutions: Record<string, string>; options: Record<string, unknown>; steps: Step[] };
let terraformJobs: string[];
let scheduledJobs: string[];

beforeAll(async () => {
  build = parse(readFileSync(`${ROOT}cloudbuild.yaml`, "utf8"));
  const tf = await readTerraform(`${ROOT}infra/modules/telemetry-jobs`);
  const jobs = tf.locals[localReference(tf.resources.google_cloud_run_v2_job?.job?.for_each)!] as Record<
    string,
    { scheduled: boolean }
  >;
  terraformJobs = Object.keys(jobs).sort();
  scheduledJobs = terraformJobs.filter((j) => jobs[j]!.scheduled);
});

function step(id: string): Step {
  const found = build.steps.find((s) => s.id === id);
  if (!found) throw new Error(`cloudbuild.yaml has no step "${id}"`);
  return found;
}

function script(id: string): string {
  return (step(id).args ?? []).join(" ");
}

/** Every step that `id` waits for, directly or not. */
function upstreamOf(id: string): Set<string> {
  const seen = new Set<string>();
  const visit = (s: string) => {
    for (const w of step(s).waitFor ?? []) {
      if (!seen.has(w)) {
        seen.add(w);
        visit(w);
      }
    }
  };
  visit(id);
  return seen;
}

describe("cloudbuild.yaml", () => {
  it("has substitutions for region and repository, and the image path built from them", () => {
    for (const key of ["_REGION", "_REPOSITORY"]) expect(build.substitutions).toHaveProperty(key);
    expect(build.substitutions._IMAGE).toBe(
      "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/telemetry-jobs",
    );
    expect(build.options.dynamicSubstitutions).toBe(true);
  });

  it("installs, lints, typechecks and tests (on an embedded PostgreSQL, no Docker) before building the image", () => {
    expect(step("install").args).toEqual(["ci", "--no-audit", "--no-fund"]);
    expect(step("lint").args).toEqual(["run", "lint"]);
    expect(step("typecheck").args).toEqual(["run", "typecheck"]);
    expect(step("test").args).toEqual(["test"]);
    expect(step("test").env).toContain("TESTCONTAINERS_DISABLED=1");
    for (const id of ["install", "lint", "typecheck", "test"]) expect(step(id).name).toMatch(/^node:24/);
    expect([...upstreamOf("image")]).toEqual(
      expect.arrayContaining(["install", "lint", "typecheck", "test"]),
    );
  });

  it("builds with a registry layer cache and pushes the image tagged with the commit", () => {
    const image = script("image");
    expect(image).toMatch(/--cache-from type=registry,ref=\$\{_IMAGE\}:buildcache/);
    expect(image).toMatch(/--cache-to type=registry,ref=\$\{_IMAGE\}:buildcache,mode=max/);
    expect(image).toMatch(/--tag \$\{_IMAGE\}:\$COMMIT_SHA/);
    expect(image).toMatch(/--push/);
  });

  it("runs migrate on the new image and waits for it, before any other job gets the image", () => {
    const migrate = script("migrate");
    expect(migrate).toMatch(/gcloud run jobs update migrate .*--image="\$\$\{image\}"/s);
    expect(migrate).toMatch(/gcloud run jobs execute migrate --region=\$\{_REGION\} --wait/);
    expect(migrate.indexOf("jobs update migrate")).toBeLessThan(migrate.indexOf("jobs execute migrate"));
    expect(upstreamOf("migrate")).toContain("image");
    expect(upstreamOf("deploy")).toContain("migrate");
  });

  it("points every job at the image digest, not at a tag", () => {
    const digest = script("digest");
    expect(digest).toMatch(/gcloud artifacts docker images describe "\$\{_IMAGE\}:\$COMMIT_SHA"/);
    expect(digest).toMatch(/image_summary\.digest/);
    expect(digest).toMatch(/\$\{_IMAGE\}@\$\$\{digest\}/);
    for (const id of ["migrate", "deploy"])
      expect(script(id)).toMatch(/image=\$\$\(cat \/workspace\/image-ref\)/);
    expect(script("deploy")).toMatch(
      /for job in \$\{_SCHEDULED_JOBS\}; do\s+gcloud run jobs update "\$\$\{job\}" .*--image="\$\$\{image\}"/s,
    );
  });

  it("never deploys with flags that would fight Terraform (env, secrets, service account)", () => {
    const all = build.steps.map((s) => (s.args ?? []).join(" ")).join("\n");
    expect(all).not.toMatch(
      /--set-env-vars|--update-env-vars|--set-secrets|--service-account|--command|--args/,
    );
  });
});

describe("job names agree across Terraform, cloudbuild.yaml and the docs", () => {
  it("Cloud Build deploys exactly the Terraform jobs: migrate first, then the scheduled ones", () => {
    const deployed = build.substitutions._SCHEDULED_JOBS!.split(/\s+/).sort();
    expect(deployed).toEqual(scheduledJobs);
    expect([...deployed, "migrate"].sort()).toEqual(terraformJobs);
  });

  it("every job entrypoint in jobs/ is deployed by Cloud Build", () => {
    const onDisk = readdirSync(`${ROOT}jobs`, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(`${ROOT}jobs/${d.name}/main.ts`))
      .map((d) => d.name);
    const deployed = [...build.substitutions._SCHEDULED_JOBS!.split(/\s+/), "migrate"];
    for (const job of onDisk) expect(deployed, `jobs/${job}`).toContain(job);
  });

  it("docs/deploy.md names every job, and every job the docs run exists", () => {
    const deployDoc = readFileSync(`${ROOT}docs/deploy.md`, "utf8");
    for (const job of terraformJobs)
      expect(deployDoc, `docs/deploy.md mentions ${job}`).toContain(`\`${job}\``);
    const docs = ["docs/deploy.md", "docs/alerts.md"]
      .map((f) => readFileSync(`${ROOT}${f}`, "utf8"))
      .join("\n");
    const executed = [...docs.matchAll(/gcloud run jobs (?:execute|update|describe) ([a-z][a-z-]*)/g)].map(
      (m) => m[1]!,
    );
    expect(executed.length).toBeGreaterThan(0);
    for (const job of executed)
      expect(terraformJobs, `a doc runs "gcloud run jobs ... ${job}"`).toContain(job);
  });
});

describe("a deploy leaves nothing for the next terraform plan to undo", () => {
  let tf: Awaited<ReturnType<typeof readTerraform>>;
  beforeAll(async () => {
    tf = await readTerraform(`${ROOT}infra/modules/telemetry-jobs`);
  });

  /** Label keys that the build's gcloud commands set on the jobs. */
  function buildLabelKeys(): string[] {
    const all = build.steps.map((s) => (s.args ?? []).join(" ")).join("\n");
    return [...all.matchAll(/--update-labels=(\S+)/g)].flatMap((m) =>
      m[1]!.split(",").map((pair) => pair.split("=")[0]!),
    );
  }

  it("the build never sets, replaces or removes a label that Terraform manages", () => {
    const all = build.steps.map((s) => (s.args ?? []).join(" ")).join("\n");
    expect(all).not.toMatch(/--labels=|--clear-labels|--remove-labels/);
    const managed = Object.keys(tf.locals.labels as Record<string, string>);
    expect(managed.length).toBeGreaterThan(0);
    for (const key of buildLabelKeys())
      expect(managed, `label ${key} set by cloudbuild.yaml`).not.toContain(key);
  });

  it("Terraform ignores each label the build stamps, on the job and on its execution template", () => {
    const keys = buildLabelKeys();
    expect(keys).toContain("commit-sha");
    const job = tf.resources.google_cloud_run_v2_job?.job as Record<string, any>;
    const ignored = (job.lifecycle?.[0]?.ignore_changes ?? []) as string[];
    for (const key of keys) {
      expect(ignored, `labels["${key}"]`).toContain(`\${labels["${key}"]}`);
      expect(ignored, `template[0].labels["${key}"]`).toContain(`\${template[0].labels["${key}"]}`);
    }
  });
});

describe("the build outlives the migrate it waits for", () => {
  const seconds = (d: unknown) => {
    const m = /^(\d+)s$/.exec(String(d));
    if (!m) throw new Error(`not a duration in seconds: ${String(d)}`);
    return Number(m[1]);
  };

  it("the migrate step's timeout covers the migrate task's timeout, and the build's covers every step around it", async () => {
    const tf = await readTerraform(`${ROOT}infra/modules/telemetry-jobs`);
    const migrateTask = seconds(tf.variables.task_timeouts?.default?.migrate);
    const migrateStep = seconds((step("migrate") as Step & { timeout?: string }).timeout);
    const whole = seconds((build as unknown as { timeout: string }).timeout);
    // gcloud run jobs update + execute: a few minutes on top of the task itself.
    expect(migrateStep, "migrate step timeout").toBeGreaterThanOrEqual(migrateTask + 300);
    // Install, lint, typecheck, test, image, digest and deploy had 3600 s for everything before.
    expect(whole, "build timeout").toBeGreaterThanOrEqual(migrateStep + 3600);
    expect(whole, "Cloud Build's maximum is 24 h").toBeLessThanOrEqual(86400);
  });
});
