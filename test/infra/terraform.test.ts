// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" strings here are Terraform and Cloud Build expressions, not JS templates.
// What must stay true of infra/ (parsed, not planned: provider downloads do not work offline).
// Each check names the file to fix when it fails.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { PolicyFileSchema } from "../../shared/config/policy.ts";
import {
  type Block,
  iamGrants,
  localReference,
  nested,
  readTerraform,
  resolveForEach,
  type TerraformDocument,
} from "./hcl.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MODULE_DIR = `${ROOT}infra/modules/telemetry-jobs`;
const EXAMPLE_DIR = `${ROOT}infra/environments/example`;

/** Job entrypoints on disk: jobs/<name>/main.ts, bundled by scripts/build.mjs to dist/<name>.mjs. */
function entrypoints(): string[] {
  return readdirSync(`${ROOT}jobs`, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(`${ROOT}jobs/${d.name}/main.ts`))
    .map((d) => d.name)
    .sort();
}

/** Jobs that infra/ defines ahead of their entrypoint (being written); nothing else may lack one. */
const ANNOUNCED_JOBS = ["rollup-hourly"];

let tf: TerraformDocument;
let example: TerraformDocument;
let jobs: Record<string, Record<string, unknown>>;
let jobResource: Block;

beforeAll(async () => {
  tf = await readTerraform(MODULE_DIR);
  example = await readTerraform(EXAMPLE_DIR);
  jobResource = tf.resources.google_cloud_run_v2_job?.job as Block;
  const jobsLocal = localReference(jobResource?.for_each);
  jobs = jobsLocal ? tf.locals[jobsLocal] : {};
});

function jobNames(): string[] {
  return Object.keys(jobs).sort();
}

function scheduledJobNames(): string[] {
  return Object.entries(jobs)
    .filter(([, job]) => job.scheduled === true)
    .map(([name]) => name)
    .sort();
}

function container(job: string) {
  const block = nested(jobResource, "template", "template", "containers")!;
  const each = { key: job, value: jobs[job]! };
  return {
    command: resolveForEach(block.command, each, tf.variables) as unknown,
    args: resolveForEach(block.args, each, tf.variables) as unknown,
    block,
  };
}

describe("Cloud Run jobs (infra/modules/telemetry-jobs/main.tf)", () => {
  it("one google_cloud_run_v2_job per entry of a local job table, named after the job", () => {
    expect(jobResource, "resource google_cloud_run_v2_job.job").toBeDefined();
    expect(localReference(jobResource.for_each), "for_each over a local map").toBeDefined();
    expect(jobResource.name).toBe("${each.key}");
    expect(jobNames().length).toBeGreaterThan(0);
  });

  it("every entrypoint jobs/<name>/main.ts has a Cloud Run job whose command runs dist/<name>.mjs", () => {
    const found = entrypoints();
    expect(found).toContain("partition-manager");
    for (const job of found) {
      expect(jobNames(), `jobs/${job}/main.ts has no Cloud Run job`).toContain(job);
      expect(container(job).command, `command of ${job}`).toEqual([
        "/nodejs/bin/node",
        `/app/dist/${job}.mjs`,
      ]);
    }
  });

  it("every Cloud Run job has an entrypoint (or is announced and on its way)", () => {
    const onDisk = entrypoints();
    for (const job of jobNames()) {
      if (!onDisk.includes(job)) expect(ANNOUNCED_JOBS, `${job} has no jobs/${job}/main.ts`).toContain(job);
    }
  });

  it("args carry run options only, so --args overrides never replace the bundle", () => {
    for (const job of jobNames()) {
      const { args } = container(job);
      expect(Array.isArray(args), `args of ${job} must be a list`).toBe(true);
      for (const arg of args as string[]) {
        expect(arg, `args of ${job}`).not.toMatch(/\.m?js$|node|dist\//);
      }
    }
    expect(container("migrate").args).toEqual(["up"]);
  });

  it("the command matches the image: distroless node at /nodejs/bin/node, bundles in /app/dist (Dockerfile)", () => {
    const dockerfile = readFileSync(`${ROOT}Dockerfile`, "utf8");
    const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    expect(runtime).toMatch(/^ENTRYPOINT \["\/nodejs\/bin\/node"\]$/m);
    expect(runtime).toMatch(/^WORKDIR \/app$/m);
    expect(runtime).toMatch(/^COPY --from=build \S+\/dist \.\/dist$/m);
    expect(dockerfile).toMatch(/ARG RUNTIME_IMAGE=gcr\.io\/distroless\/nodejs24-debian12:nonroot/);
    expect(runtime).toMatch(/^USER nonroot$/m);
    expect(dockerfile).toMatch(/npm ci --omit=dev --omit=optional/);
  });

  it("migrate is never retried and never scheduled", () => {
    const templ = nested(jobResource, "template", "template")!;
    expect(templ.max_retries).toBe("${each.value.max_retries}");
    expect(jobs.migrate?.max_retries).toBe(0);
    expect(jobs.migrate?.scheduled).toBe(false);
  });

  it("every job has a task timeout and a retry count of its own", () => {
    const templ = nested(jobResource, "template", "template")!;
    expect(templ.timeout).toBe("${var.task_timeouts[each.key]}");
    const timeouts = tf.variables.task_timeouts?.default ?? {};
    for (const job of jobNames()) {
      expect(timeouts[job], `task_timeouts default for ${job}`).toMatch(/^\d+s$/);
      expect(Number.isInteger(jobs[job]!.max_retries), `max_retries of ${job}`).toBe(true);
    }
  });

  it("rollup-hourly runs several tasks, from a variable, all in parallel", () => {
    const templ = nested(jobResource, "template")!;
    expect(templ.task_count).toBe("${each.value.task_count}");
    expect(templ.parallelism).toBe("${each.value.task_count}");
    expect(jobs["rollup-hourly"]?.task_count).toBe("${var.rollup_task_count}");
    expect(tf.variables.rollup_task_count?.default).toBeGreaterThan(1);
  });

  it("the jobs run as their own service account, and Cloud Build owns the image after creation", () => {
    const templ = nested(jobResource, "template", "template")!;
    expect(templ.service_account).toBe("${google_service_account.jobs.email}");
    const ignored = nested(jobResource, "lifecycle")?.ignore_changes ?? [];
    expect(ignored).toContain("${template[0].template[0].containers[0].image}");
  });

  it("the policy reaches the jobs as TELEMETRY_JOBS_CONFIG_JSON, rendered with jsonencode", () => {
    const env = tf.locals.env as Record<string, string>;
    expect(env.TELEMETRY_JOBS_CONFIG_JSON).toMatch(/^\$\{jsonencode\(local\.policy\)\}$/);
    expect(tf.locals.policy).toContain("var.retention_keep");
    for (const name of ["INSTANCE_CONNECTION_NAME", "DB_NAME", "DB_USER", "DB_IP_TYPE", "DB_AUTH"]) {
      expect(env, `env ${name}`).toHaveProperty(name);
    }
  });
});

describe("Cloud Scheduler triggers", () => {
  let trigger: Block;
  beforeAll(() => {
    trigger = tf.resources.google_cloud_scheduler_job?.trigger as Block;
  });

  it("every job but migrate is scheduled, with a default schedule and an example-environment schedule", () => {
    expect(scheduledJobNames()).toEqual(jobNames().filter((j) => j !== "migrate"));
    expect(Object.keys(tf.variables.schedules?.default ?? {}).sort()).toEqual(scheduledJobNames());
    const exampleSchedules = example.modules.telemetry_jobs?.schedules ?? {};
    expect(Object.keys(exampleSchedules).sort()).toEqual(scheduledJobNames());
  });

  it("one trigger per scheduled job, in UTC", () => {
    expect(trigger, "resource google_cloud_scheduler_job.trigger").toBeDefined();
    const scheduledLocal = localReference(trigger.for_each);
    expect(scheduledLocal).toBe("scheduled_jobs");
    expect(tf.locals.scheduled_jobs).toMatch(
      /for name, job in local\.jobs : name => var\.schedules\[name\] if job\.scheduled/,
    );
    expect(trigger.time_zone).toBe("Etc/UTC");
  });

  it("POSTs to the Cloud Run v2 :run endpoint of its own job", () => {
    const http = nested(trigger, "http_target")!;
    expect(http.http_method).toBe("POST");
    expect(http.uri).toBe(
      "https://run.googleapis.com/v2/projects/${var.project}/locations/${var.region}/jobs/${google_cloud_run_v2_job.job[each.key].name}:run",
    );
  });

  it("authenticates with an OAuth token of the scheduler service account (scope cloud-platform)", () => {
    const http = nested(trigger, "http_target")!;
    const oauth = nested(http, "oauth_token");
    expect(oauth, "http_target.oauth_token").toBeDefined();
    expect(oauth!.service_account_email).toBe("${google_service_account.scheduler.email}");
    expect(oauth!.scope).toBe("https://www.googleapis.com/auth/cloud-platform");
    expect(http.oidc_token, "Google APIs take OAuth tokens, not OIDC").toBeUndefined();
  });
});

describe("IAM", () => {
  it("the scheduler's account can execute exactly the scheduled jobs, and nothing else", () => {
    const grants = iamGrants(tf).filter((g) =>
      g.members.some((m) => m.includes("google_service_account.scheduler")),
    );
    expect(grants.map((g) => g.address)).toEqual(["google_cloud_run_v2_job_iam_member.scheduler_runs"]);
    const grant = grants[0]!;
    expect(grant.role).toBe("roles/run.jobsExecutor");
    expect(grant.block.for_each).toBe("${local.scheduled_jobs}");
    expect(grant.block.name).toBe("${google_cloud_run_v2_job.job[each.key].name}");
    const trigger = tf.resources.google_cloud_scheduler_job?.trigger as Block;
    expect(trigger.depends_on).toContain("${google_cloud_run_v2_job_iam_member.scheduler_runs}");
  });

  it("no broad roles anywhere: no owner/editor/admin roles, no authoritative bindings", () => {
    const grants = iamGrants(tf);
    expect(grants.length).toBeGreaterThan(0);
    for (const g of grants) {
      expect(g.role, g.address).not.toMatch(
        /^roles\/(owner|editor|viewer|[a-z]+\.admin|iam\.serviceAccountAdmin|iam\.serviceAccountTokenCreator|iam\.securityAdmin|resourcemanager\.projectIamAdmin)$/,
      );
      expect(g.type, `${g.address}: authoritative IAM replaces other grants`).not.toMatch(
        /_iam_(binding|policy)$/,
      );
    }
  });

  it("project-wide grants are only Cloud SQL access (narrowed to the instance), log writing and the operators' log and schedule reading", () => {
    const projectGrants = iamGrants(tf).filter((g) => g.type === "google_project_iam_member");
    for (const g of projectGrants) {
      expect(
        [
          "roles/cloudsql.client",
          "roles/cloudsql.instanceUser",
          "roles/logging.logWriter",
          "roles/logging.viewer",
          "roles/cloudscheduler.viewer",
        ],
        g.address,
      ).toContain(g.role);
      if (g.role.endsWith(".viewer")) expect(g.block.for_each, g.address).toBe("${toset(var.operators)}");
      if (g.role.startsWith("roles/cloudsql.")) {
        expect(nested(g.block, "condition")?.expression, `${g.address} condition`).toBe(
          "${local.sql_instance_condition}",
        );
      }
    }
    expect(tf.locals.sql_instance_condition).toContain("sqladmin.googleapis.com/Instance");
    const runRoles = iamGrants(tf).filter((g) => g.role.startsWith("roles/run."));
    for (const g of runRoles)
      expect(g.type, `${g.address} must be granted on a job`).toBe("google_cloud_run_v2_job_iam_member");
  });

  it("the jobs' account: Cloud SQL client and instance user, an IAM database user", () => {
    const jobsGrants = iamGrants(tf).filter((g) =>
      g.members.some((m) => m.includes("google_service_account.jobs.email")),
    );
    expect(jobsGrants.map((g) => g.role).sort()).toEqual([
      // The cold tier's writer role, on its bucket only (test/infra/cold-tier.test.ts).
      "${google_project_iam_custom_role.cold_writer[0].id}",
      "roles/cloudsql.client",
      "roles/cloudsql.instanceUser",
      "roles/secretmanager.secretAccessor",
    ]);
    const secret = jobsGrants.find((g) => g.role === "roles/secretmanager.secretAccessor")!;
    expect(secret.type).toBe("google_secret_manager_secret_iam_member");
    expect(secret.block.count).toBe("${local.password_auth ? 1 : 0}");
    const sqlUser = tf.resources.google_sql_user?.jobs as Block;
    expect(sqlUser.type).toBe("CLOUD_IAM_SERVICE_ACCOUNT");
    expect(sqlUser.name).toBe('${trimsuffix(google_service_account.jobs.email, ".gserviceaccount.com")}');
  });

  it("Cloud Build's account: push to the repository, deploy each job, act as the jobs' account only", () => {
    const build = iamGrants(tf).filter((g) =>
      g.members.some((m) => m.includes("google_service_account.build")),
    );
    expect(build.map((g) => `${g.type} ${g.role}`).sort()).toEqual([
      "google_artifact_registry_repository_iam_member roles/artifactregistry.writer",
      "google_cloud_run_v2_job_iam_member roles/run.developer",
      "google_project_iam_member roles/logging.logWriter",
      "google_service_account_iam_member roles/iam.serviceAccountUser",
      "google_storage_bucket_iam_member roles/storage.objectViewer",
    ]);
    const actAs = build.find((g) => g.role === "roles/iam.serviceAccountUser")!;
    expect(actAs.block.service_account_id).toBe("${google_service_account.jobs.name}");
  });

  it("enables the APIs it uses", () => {
    const services = tf.resources.google_project_service?.enabled?.for_each as string;
    for (const api of [
      "run",
      "cloudscheduler",
      "artifactregistry",
      "cloudbuild",
      "sqladmin",
      "secretmanager",
      "monitoring",
      "logging",
    ]) {
      expect(services, api).toContain(`"${api}.googleapis.com"`);
    }
  });
});

describe("secrets", () => {
  it("no secret-looking variable in the plain environment of the jobs", () => {
    for (const name of Object.keys(tf.locals.env as Record<string, string>)) {
      expect(name).not.toMatch(/PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|API_KEY/);
    }
  });

  it("DB_PASSWORD only from Secret Manager (value_source.secret_key_ref), only with PASSWORD auth", () => {
    const envBlocks = (nested(jobResource, "template", "template", "containers")!.dynamic?.env ??
      []) as Block[];
    const literalEnv = (nested(jobResource, "template", "template", "containers")!.env ?? []) as Block[];
    expect(literalEnv.filter((e) => /PASSWORD|SECRET|TOKEN/.test(String(e.name)))).toEqual([]);
    const password = envBlocks.find((e) => nested(e, "content")?.name === "DB_PASSWORD");
    expect(password, "dynamic env DB_PASSWORD").toBeDefined();
    const content = nested(password, "content")!;
    expect(content.value, "DB_PASSWORD must not have a literal value").toBeUndefined();
    expect(nested(content, "value_source", "secret_key_ref")?.secret).toBeDefined();
    expect(password!.for_each).toMatch(/^\$\{local\.password_auth \?/);
  });

  it("no secret values in Terraform: no secret versions, no passwords, no credentials in URLs", () => {
    expect(tf.resources.google_secret_manager_secret_version).toBeUndefined();
    for (const [address, block] of Object.entries(tf.resources.google_sql_user ?? {})) {
      expect(block.password, address).toBeUndefined();
    }
    for (const doc of [tf, example]) {
      for (const [file, text] of Object.entries(doc.files)) {
        expect(text, file).not.toMatch(
          /secret_data|postgres(ql)?:\/\/[^/\s:@]+:[^/\s@]+@|BEGIN [A-Z ]*PRIVATE KEY/,
        );
      }
      for (const [name, variable] of Object.entries(doc.variables)) {
        if (/password$|secret_value|token/.test(name))
          expect(variable.default ?? null, `variable ${name}`).toBeNull();
      }
    }
  });
});

describe("alerts and dashboard (monitoring.tf)", () => {
  it("a failed execution of any job alerts (Cloud Run's execution count, result failed)", () => {
    const policy = tf.resources.google_monitoring_alert_policy?.execution_failed as Block;
    const filter = nested(policy, "conditions", "condition_threshold")?.filter as string;
    expect(filter).toContain('metric.type = "run.googleapis.com/job/completed_execution_count"');
    expect(filter).toContain('metric.labels.result = "failed"');
    expect(filter).toContain("local.job_names");
  });

  it("no successful run within a window alerts, per scheduled job, looking back further than a day when asked", () => {
    const policy = tf.resources.google_monitoring_alert_policy?.no_successful_run as Block;
    expect(policy.for_each).toBe("${local.scheduled_jobs}");
    const query = nested(policy, "conditions", "condition_prometheus_query_language")?.query as string;
    expect(query).toMatch(/^absent_over_time\(logging_googleapis_com:user_telemetry_jobs_run_summaries\{/);
    // A refused run ran (and pages through execution_failed): it must not read as an outage.
    expect(query).toContain('status=~"ok|refused"');
    expect(tf.resources.google_logging_metric?.run_summaries?.name).toBe("telemetry_jobs/run_summaries");
    const windows = tf.variables.success_windows?.default ?? {};
    expect(Object.keys(windows).sort()).toEqual(scheduledJobNames());
  });

  it("table health alerts: buffer short of the table's premake, DEFAULT rows, rollup lag, from table_health fields", () => {
    const thresholds = tf.locals.health_thresholds as Record<string, { condition: string }>;
    // Against each table's own premake (futureBufferShortfall = premake - futureBufferIntervals), not
    // a fixed count: a fixed 2 fires forever for a table with premake 1.
    expect(thresholds.buffer_short_of_premake?.condition).toBe("jsonPayload.futureBufferShortfall > 0");
    for (const t of Object.values(thresholds)) expect(t.condition).not.toMatch(/futureBufferIntervals/);
    expect(thresholds.default_partition_has_rows?.condition).toBe("jsonPayload.defaultRows > 0");
    expect(thresholds.rollup_lag_exceeded?.condition).toMatch(/^jsonPayload\.rollupLagSeconds > \$\{var\./);
    const alerts = tf.resources.google_monitoring_alert_policy?.table_health as Block;
    expect(Object.keys(alerts.for_each as Record<string, unknown>).sort()).toEqual(
      Object.keys(thresholds).sort(),
    );
    expect(tf.locals.health).toContain('jsonPayload.event="table_health"');
    const health = readFileSync(`${ROOT}shared/partitions/health.ts`, "utf8");
    expect(health).toMatch(/futureBufferShortfall/);
    expect(health).toMatch(/defaultRows/);
    const runner = readFileSync(`${ROOT}shared/run/runner.ts`, "utf8");
    expect(runner).toMatch(/event: "table_health"/);
    expect(runner).toMatch(/event: "run_summary"/);
    // The fields the filters leave dry runs and --now runs out by (test/integration/health-records).
    expect(runner).toMatch(/dryRun: spec\.config\.options\.dryRun, clockShifted:/);
  });

  it("each alert points at its section of docs/alerts.md", () => {
    const alertsDoc = readFileSync(`${ROOT}docs/alerts.md`, "utf8");
    const headings = [...alertsDoc.matchAll(/^## (.+)$/gm)].map((m) => m[1]!.trim());
    const sections: string[] = [];
    for (const [name, policy] of Object.entries(tf.resources.google_monitoring_alert_policy ?? {})) {
      const content = nested(policy, "documentation")?.content as string;
      const section = /section "([^"]+)"/.exec(content)?.[1];
      if (section?.includes("${")) {
        for (const entry of Object.values(policy.for_each as Record<string, { doc: string }>))
          sections.push(entry.doc);
      } else {
        expect(section, `documentation of alert policy ${name}`).toBeDefined();
        sections.push(section!);
      }
    }
    expect(sections.length).toBeGreaterThanOrEqual(5);
    for (const section of sections)
      expect(headings, `docs/alerts.md section "${section}"`).toContain(section);
  });

  it("a dashboard of job outcomes, durations and the health figures", () => {
    const charts = tf.locals.dashboard_charts as Block[];
    const filters = charts.map((c) => String(c.filter)).join("\n");
    for (const metric of [
      "run.googleapis.com/job/completed_execution_count",
      "telemetry_jobs/run_summaries",
      "telemetry_jobs/run_duration",
      "telemetry_jobs/future_buffer_intervals",
      "telemetry_jobs/default_rows",
      "telemetry_jobs/rollup_lag_seconds",
    ]) {
      expect(filters, metric).toContain(metric);
    }
    expect(tf.resources.google_monitoring_dashboard?.jobs).toBeDefined();
  });
});

describe("the example environment (infra/environments/example)", () => {
  it("uses the module with a policy file that the jobs accept, and per-environment retention", () => {
    const module = example.modules.telemetry_jobs!;
    expect(module.source).toBe("../../modules/telemetry-jobs");
    expect(module.policy).toBe('${jsondecode(file("${path.module}/policy.json"))}');
    const policy = JSON.parse(readFileSync(`${EXAMPLE_DIR}/policy.json`, "utf8"));
    const keep = module.retention_keep as Record<string, string>;
    for (const table of policy.tables) {
      if (keep[table.table]) table.retention = { ...(table.retention ?? {}), keep: keep[table.table] };
    }
    const parsed = PolicyFileSchema.safeParse(policy);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    const tables = policy.tables.map((t: { table: string }) => t.table);
    for (const table of Object.keys(keep)) expect(tables, `retention_keep ${table}`).toContain(table);
  });

  it("sets every variable the module requires", () => {
    const module = example.modules.telemetry_jobs!;
    for (const [name, variable] of Object.entries(tf.variables)) {
      if (!("default" in variable)) expect(module, `module input ${name}`).toHaveProperty(name);
    }
  });
});

describe("one apply creates the log-based metrics before the alert policies that use them", () => {
  const usesLogMetric = (policy: Block) =>
    /logging\.googleapis\.com\/user\/|logging_googleapis_com:user_|google_logging_metric\./.test(
      JSON.stringify(policy.conditions ?? []),
    );

  it("a time_sleep waits after every log-based metric (Cloud Monitoring accepts a new one only minutes later)", () => {
    const sleep = tf.resources.time_sleep?.log_metrics_propagation as Block;
    expect(sleep, "resource time_sleep.log_metrics_propagation (monitoring.tf)").toBeDefined();
    const metrics = Object.keys(tf.resources.google_logging_metric ?? {});
    expect(metrics.length).toBeGreaterThan(0);
    for (const metric of metrics)
      expect(sleep.depends_on, `time_sleep waits for google_logging_metric.${metric}`).toContain(
        `\${google_logging_metric.${metric}}`,
      );
    const wait = String(tf.variables.log_metric_propagation_wait?.default ?? "");
    expect(sleep.create_duration).toBe("${var.log_metric_propagation_wait}");
    expect(wait).toMatch(/^\d+[sm]$/);
    const seconds = wait.endsWith("m") ? Number.parseInt(wait, 10) * 60 : Number.parseInt(wait, 10);
    expect(seconds, "a few minutes").toBeGreaterThanOrEqual(120);
    // A renamed or new metric sleeps again: the triggers follow the metric names.
    expect(JSON.stringify(sleep.triggers)).toContain("google_logging_metric.");
  });

  it("every alert policy on a log-based metric depends on the time_sleep", () => {
    const onLogMetrics = Object.entries(tf.resources.google_monitoring_alert_policy ?? {}).filter(([, p]) =>
      usesLogMetric(p),
    );
    expect(onLogMetrics.map(([name]) => name).sort()).toEqual(["no_successful_run", "table_health"]);
    for (const [name, policy] of onLogMetrics)
      expect(policy.depends_on, `google_monitoring_alert_policy.${name}`).toContain(
        "${time_sleep.log_metrics_propagation}",
      );
  });

  it("the module and the example declare the hashicorp/time provider", () => {
    for (const dir of [MODULE_DIR, EXAMPLE_DIR]) {
      const versions = readFileSync(`${dir}/versions.tf`, "utf8");
      expect(versions, `${dir}/versions.tf`).toMatch(/time\s*=\s*\{\s*source\s*=\s*"hashicorp\/time"/);
    }
  });
});

describe("dry runs and runs with --now never reach the metrics", () => {
  /** A filter with its ${local.NAME} references replaced by the locals' text. */
  const expand = (filter: string): string =>
    filter.replace(/\$\{local\.([a-z_]+)\}/g, (_, name: string) => expand(String(tf.locals[name])));

  it("every log-based metric's filter leaves out records with dryRun or clockShifted true", () => {
    const metrics = Object.entries(tf.resources.google_logging_metric ?? {});
    expect(metrics.length).toBeGreaterThan(0);
    for (const [name, metric] of metrics) {
      const filter = expand(String(metric.filter));
      expect(filter, `google_logging_metric.${name}`).toContain("NOT jsonPayload.dryRun=true");
      expect(filter, `google_logging_metric.${name}`).toContain("NOT jsonPayload.clockShifted=true");
      // Negated equality, not "!=": records written before the fields existed (no field) still count.
      expect(filter, `google_logging_metric.${name}`).not.toMatch(/jsonPayload\.(dryRun|clockShifted)\s*!=/);
    }
  });

  it("docs/alerts.md says which runs are left out, by the same field names", () => {
    const alertsDoc = readFileSync(`${ROOT}docs/alerts.md`, "utf8");
    expect(alertsDoc).toMatch(/`dryRun`/);
    expect(alertsDoc).toMatch(/`clockShifted`/);
    expect(alertsDoc).toMatch(/--now/);
  });
});

describe("operators can run the runbooks' own commands", () => {
  it("on each job: execute with overrides, and read jobs, executions and tasks (--wait, executions list)", () => {
    const onJobs = iamGrants(tf).filter(
      (g) => g.type === "google_cloud_run_v2_job_iam_member" && g.block.member === "${each.value.member}",
    );
    expect(onJobs.map((g) => g.role).sort()).toEqual([
      "roles/run.jobsExecutorWithOverrides",
      "roles/run.viewer",
    ]);
    for (const g of onJobs) {
      expect(String(g.block.for_each), g.address).toContain("setproduct(keys(local.jobs), var.operators)");
      expect(g.block.name, g.address).toBe("${google_cloud_run_v2_job.job[each.value.job].name}");
    }
  });

  it("logs: roles/logging.viewer on the project (log reading cannot be granted on a job), for operators only", () => {
    const logs = iamGrants(tf).filter((g) => g.role === "roles/logging.viewer");
    expect(logs.map((g) => g.type)).toEqual(["google_project_iam_member"]);
    expect(logs[0]!.block.for_each).toBe("${toset(var.operators)}");
    expect(logs[0]!.block.member).toBe("${each.value}");
  });

  it("schedules: roles/cloudscheduler.viewer on the project (Cloud Scheduler has no per-job IAM), for operators only", () => {
    const scheduler = iamGrants(tf).filter((g) => g.role === "roles/cloudscheduler.viewer");
    expect(scheduler.map((g) => g.type)).toEqual(["google_project_iam_member"]);
    expect(scheduler[0]!.block.for_each).toBe("${toset(var.operators)}");
  });

  it("docs/deploy.md lists what operators get", () => {
    const deployDoc = readFileSync(`${ROOT}docs/deploy.md`, "utf8");
    for (const role of [
      "roles/run.jobsExecutorWithOverrides",
      "roles/run.viewer",
      "roles/logging.viewer",
      "roles/cloudscheduler.viewer",
    ])
      expect(deployDoc, role).toContain(role);
  });
});

describe("db_ip_type needs the network it implies", () => {
  it("PRIVATE and PSC both refuse a plan without vpc_network (Direct VPC egress reaches the private IP or the PSC endpoint)", () => {
    const preconditions = (nested(jobResource, "lifecycle")?.precondition ?? []) as Block[];
    const network = preconditions.filter((p) => String(p.condition).includes("var.vpc_network"));
    expect(network.map((p) => p.condition)).toEqual([
      '${!contains(["PRIVATE", "PSC"], var.db_ip_type) || var.vpc_network != null}',
    ]);
    expect(String(network[0]!.error_message)).toMatch(/PSC/);
    expect(String(tf.variables.db_ip_type?.description)).toMatch(/PSC \(needs vpc_network/);
  });
});

describe("the image repository cleans up after itself", () => {
  const seconds = (d: unknown) => Number(/^(\d+)s$/.exec(String(d))?.[1] ?? Number.NaN);

  it("keeps the N most recent versions, deletes untagged versions after a while, from variables with defaults", () => {
    const repo = tf.resources.google_artifact_registry_repository?.images as Block;
    const policies = (repo.cleanup_policies ?? []) as Block[];
    const keep = policies.find((p) => p.action === "KEEP" && p.most_recent_versions);
    expect(keep, "a KEEP most_recent_versions policy").toBeDefined();
    expect(nested(keep, "most_recent_versions")?.keep_count).toBe("${var.image_keep_count}");
    const untagged = policies.find(
      (p) => p.action === "DELETE" && nested(p, "condition")?.tag_state === "UNTAGGED",
    );
    expect(untagged, "a DELETE policy for untagged versions").toBeDefined();
    expect(nested(untagged, "condition")?.older_than).toBe("${var.untagged_image_max_age}");
    expect(repo.cleanup_policy_dry_run).toBe("${var.image_cleanup_dry_run}");

    expect(
      tf.variables.image_keep_count?.default,
      "room for rollbacks and the build cache",
    ).toBeGreaterThanOrEqual(10);
    expect(
      seconds(tf.variables.untagged_image_max_age?.default),
      "untagged_image_max_age, as Ns",
    ).toBeGreaterThanOrEqual(86400);
    expect(tf.variables.image_cleanup_dry_run?.default).toBe(false);
  });

  it("tagged images go only after tagged_image_max_age (null keeps them), and never the N most recent", () => {
    const repo = tf.resources.google_artifact_registry_repository?.images as Block;
    const dynamic = ((repo.dynamic?.cleanup_policies ?? []) as Block[])[0];
    expect(dynamic?.for_each).toBe("${var.tagged_image_max_age == null ? [] : [var.tagged_image_max_age]}");
    const content = nested(dynamic, "content")!;
    expect(content.action).toBe("DELETE");
    expect(nested(content, "condition")?.tag_state).toBe("TAGGED");
    expect(seconds(tf.variables.tagged_image_max_age?.default)).toBeGreaterThanOrEqual(30 * 86400);
  });
});
