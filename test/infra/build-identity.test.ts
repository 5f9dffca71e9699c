// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" strings here are Terraform and Cloud Build expressions, not JS templates.
// Every build runs as the build service account the module creates (telemetry-jobs-build), never as
// the project's default Cloud Build account, whose roles differ from project to project: the first
// image (docs/deploy.md step 2) as much as the trigger's builds (step 7).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type Block, iamGrants, nested, readTerraform, type TerraformDocument } from "./hcl.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BOOTSTRAP = "infra/bootstrap-image.cloudbuild.yaml";
const BUILD_SA =
  "--service-account=projects/PROJECT/serviceAccounts/telemetry-jobs-build@PROJECT.iam.gserviceaccount.com";

let tf: TerraformDocument;
let deployDoc: string;

beforeAll(async () => {
  tf = await readTerraform(`${ROOT}infra/modules/telemetry-jobs`);
  deployDoc = readFileSync(`${ROOT}docs/deploy.md`, "utf8");
});

/** The text of docs/deploy.md from "**N." to the next numbered step. */
function stepText(n: number): string {
  const start = deployDoc.indexOf(`**${n}. `);
  const end = deployDoc.indexOf(`**${n + 1}. `, start);
  return start < 0 ? "" : deployDoc.slice(start, end < 0 ? undefined : end);
}

describe("the build service account", () => {
  it("is made by the module, after the APIs, with exactly the grants the builds need", () => {
    const account = tf.resources.google_service_account?.build as Block;
    expect(account.account_id).toBe("telemetry-jobs-build");
    expect(account.depends_on).toContain("${google_project_service.enabled}");
    const grants = iamGrants(tf).filter((g) =>
      g.members.some((m) => m.includes("google_service_account.build")),
    );
    expect(grants.map((g) => `${g.type} ${g.role}`).sort()).toEqual([
      "google_artifact_registry_repository_iam_member roles/artifactregistry.writer",
      "google_cloud_run_v2_job_iam_member roles/run.developer",
      "google_project_iam_member roles/logging.logWriter",
      "google_service_account_iam_member roles/iam.serviceAccountUser",
      "google_storage_bucket_iam_member roles/storage.objectViewer",
    ]);
    const sources = grants.find((g) => g.role === "roles/storage.objectViewer")!;
    expect(sources.block.bucket).toBe("${google_storage_bucket.build_sources.name}");
  });

  it("reads uploaded sources from a bucket of its own, private and emptied after a few days", () => {
    const bucket = tf.resources.google_storage_bucket?.build_sources as Block;
    expect(bucket, "google_storage_bucket.build_sources").toBeDefined();
    expect(bucket.uniform_bucket_level_access).toBe(true);
    expect(bucket.public_access_prevention).toBe("enforced");
    const rule = nested(bucket, "lifecycle_rule")!;
    expect(nested(rule, "action")?.type).toBe("Delete");
    expect(nested(rule, "condition")?.age).toBeLessThanOrEqual(30);
    const services = String(tf.resources.google_project_service?.enabled?.for_each);
    expect(services).toContain('"storage.googleapis.com"');
  });
});

describe("docs/deploy.md: every build runs as the build service account", () => {
  it("step 1 creates the account, its grants and the sources bucket before any build", () => {
    const step1 = stepText(1);
    for (const address of [
      "google_artifact_registry_repository.images",
      "google_service_account.build",
      "google_artifact_registry_repository_iam_member.build_pushes",
      "google_project_iam_member.build_writes_logs",
      "google_storage_bucket.build_sources",
      "google_storage_bucket_iam_member.build_reads_sources",
    ]) {
      expect(step1, address).toContain(`-target=module.telemetry_jobs.${address}`);
      const [type, name] = address.split(".");
      expect(tf.resources[type!]?.[name!], `${address} exists in the module`).toBeDefined();
    }
  });

  it("step 2 builds the first image as that account, with the bootstrap config and the sources bucket", () => {
    const step2 = stepText(2);
    expect(step2).toContain("gcloud builds submit");
    expect(step2).toContain(BUILD_SA);
    expect(step2).toContain(`--config=${BOOTSTRAP}`);
    expect(step2).toMatch(/--gcs-source-staging-dir=gs:\/\/PROJECT-telemetry-jobs-build-sources\/source/);
    expect(tf.resources.google_storage_bucket?.build_sources?.name).toBe(
      "${var.project}-telemetry-jobs-build-sources",
    );
  });

  it("step 7's trigger runs cloudbuild.yaml as that account", () => {
    const step7 = stepText(7);
    expect(step7).toMatch(/gcloud builds triggers create/);
    expect(step7).toContain(BUILD_SA);
  });
});

describe(BOOTSTRAP, () => {
  it("builds and pushes the image given, logging to Cloud Logging (a user-specified account cannot use the default logs bucket)", () => {
    const config = parse(readFileSync(`${ROOT}${BOOTSTRAP}`, "utf8"));
    expect(config.options?.logging).toBe("CLOUD_LOGGING_ONLY");
    expect(config.images).toEqual(["${_IMAGE}"]);
    const args = (config.steps as { args: string[] }[]).flatMap((s) => s.args).join(" ");
    expect(args).toMatch(/--tag=\$\{_IMAGE\}|-t \$\{_IMAGE\}/);
    expect(config.substitutions?._IMAGE).toBeUndefined();
  });
});
