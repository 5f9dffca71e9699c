// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" strings here are Terraform expressions, not JS templates.
// What must stay true of the cold tier in infra/ (parsed, not planned). The external tables' URIs
// are checked against shared/cold/layout.ts itself, so the Terraform and the exporter cannot drift.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "@cdktf/hcl2json";
import { beforeAll, describe, expect, it } from "vitest";
import {
  encodePathPart,
  hivePartitionKey,
  inProgressName,
  isoFromEpochMicros,
  MANIFEST_FILE,
  partFileName,
  partitionDirectory,
  tableDirectoryName,
} from "../../shared/cold/layout.ts";
import { MAX_DECIMAL_PRECISION } from "../../shared/cold/schema-map.ts";
import {
  type Block,
  iamGrants,
  localReference,
  nested,
  readTerraform,
  type TerraformDocument,
} from "./hcl.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MODULE_DIR = `${ROOT}infra/modules/telemetry-jobs`;
const EXAMPLE_DIR = `${ROOT}infra/environments/example`;

let tf: TerraformDocument;
let example: TerraformDocument;
/** cold.tf on its own: every resource and data source of the cold tier. */
let coldFile: {
  resource: Record<string, Record<string, Block[]>>;
  data: Record<string, Record<string, Block[]>>;
};
let jobResource: Block;
let jobs: Record<string, unknown>;

beforeAll(async () => {
  tf = await readTerraform(MODULE_DIR);
  example = await readTerraform(EXAMPLE_DIR);
  coldFile = (await parse("cold.tf", tf.files["cold.tf"]!)) as typeof coldFile;
  jobResource = tf.resources.google_cloud_run_v2_job?.job as Block;
  jobs = tf.locals[localReference(jobResource.for_each)!];
});

const resource = (type: string, name: string) => tf.resources[type]?.[name] as Block;

/** The jobs a `local.cold && each.key == "JOB" ? ... : ...` expression selects. */
function jobsSelectedBy(expression: unknown): string[] {
  const text = String(expression);
  expect(text, "gated on the cold tier and one job").toMatch(/^\$\{local\.cold && each\.key == "[a-z-]+" \?/);
  const job = /each\.key == "([a-z-]+)"/.exec(text)![1]!;
  return Object.keys(jobs).filter((name) => name === job);
}

/** A template of local.cold_tables (e.g. directory = "${t.schema}.${t.table}") for one table. */
function coldTableField(field: string, table: { schema: string; table: string; key_column: string }) {
  const template = new RegExp(`${field}\\s*=\\s*"((?:[^"\\\\]|\\\\.)*)"`).exec(
    String(tf.locals.cold_tables),
  )?.[1];
  expect(template, `local.cold_tables.${field}`).toBeDefined();
  return template!.replace(/\$\{t\.([a-z_]+)\}/g, (_, name: keyof typeof table) => table[name]);
}

describe("the cold tier is off by default, and off means nothing at all", () => {
  it("var.cold_tier defaults to {} with enabled = optional(bool, false); local.cold is that flag", () => {
    const variable = tf.variables.cold_tier!;
    expect(variable.default).toEqual({});
    expect(String(variable.type)).toMatch(/enabled\s*=\s*optional\(bool, false\)/);
    expect(tf.locals.cold).toBe("${var.cold_tier.enabled}");
  });

  it("every resource and data source in cold.tf exists only when local.cold", () => {
    const blocks = [
      ...Object.entries(coldFile.resource ?? {}).flatMap(([type, byName]) =>
        Object.entries(byName).map(([name, list]) => [`${type}.${name}`, list[0]!] as const),
      ),
      ...Object.entries(coldFile.data ?? {}).flatMap(([type, byName]) =>
        Object.entries(byName).map(([name, list]) => [`data.${type}.${name}`, list[0]!] as const),
      ),
    ];
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    for (const [address, block] of blocks) {
      const gate = String(block.count ?? block.for_each);
      expect(gate, address).toMatch(/^\$\{(toset\()?local\.cold (\? |&& )/);
    }
  });

  it("without it, no job has a volume, a mount or more memory, and outputs are null", () => {
    const templ = nested(jobResource, "template", "template")!;
    const containers = nested(templ, "containers")!;
    expect(templ.volumes, "volumes only through the gated dynamic block").toBeUndefined();
    expect(containers.volume_mounts).toBeUndefined();
    expect(nested(containers, "resources")?.limits?.memory).toMatch(
      /^\$\{local\.cold && each\.key == "retention" \?/,
    );
    expect(String(nested(containers, "resources")?.limits?.memory)).toMatch(/: "512Mi"\}$/);
    const outputs = readFileSync(`${MODULE_DIR}/outputs.tf`, "utf8").split(/^output /m);
    for (const name of ["cold_tier_bucket", "cold_tier_dataset", "cold_tier_mount_path"]) {
      const block = outputs.find((o) => o.startsWith(`"${name}"`));
      expect(block, `output ${name}`).toMatch(/value\s*=\s*local\.cold \?.*: null$/m);
    }
  });

  it("the example environment keeps it off unless asked", () => {
    const module = example.modules.telemetry_jobs!;
    expect(module.cold_tier?.enabled).toBe("${var.cold_tier_enabled}");
    expect(example.variables.cold_tier_enabled?.default).toBe(false);
    expect(module.cold_tier?.mount_path).toBe("/mnt/cold");
    // The doc's hot-and-cold query reads all cold history each run: colder classes bill every read.
    expect(module.cold_tier?.storage_class_transitions).toEqual([]);
  });
});

describe("the bucket", () => {
  it("uniform access, public access prevention enforced, never force-destroyed, soft delete from a variable", () => {
    const bucket = resource("google_storage_bucket", "cold");
    expect(bucket.uniform_bucket_level_access).toBe(true);
    expect(bucket.public_access_prevention).toBe("enforced");
    expect(bucket.force_destroy).toBe(false);
    expect(bucket.storage_class).toBe("STANDARD");
    expect(bucket.name).toBe("${var.cold_tier.bucket_name}");
    expect(nested(bucket, "soft_delete_policy")?.retention_duration_seconds).toBe(
      "${var.cold_tier.soft_delete_days * 86400}",
    );
    const type = String(tf.variables.cold_tier?.type);
    expect(type).toMatch(/soft_delete_days\s*=\s*optional\(number, 7\)/);
    expect(tf.files["variables.tf"]).toContain(
      "var.cold_tier.soft_delete_days >= 7 && var.cold_tier.soft_delete_days <= 90",
    );
  });

  it("optional lifecycle transitions, to NEARLINE, COLDLINE or ARCHIVE only, none by default", () => {
    const bucket = resource("google_storage_bucket", "cold");
    const rule = nested(bucket, "dynamic", "lifecycle_rule")!;
    expect(rule.for_each).toBe("${var.cold_tier.storage_class_transitions}");
    const content = nested(rule, "content")!;
    expect(nested(content, "action")?.type).toBe("SetStorageClass");
    expect(nested(content, "action")?.storage_class).toBe("${lifecycle_rule.value.storage_class}");
    expect(nested(content, "condition")?.age).toBe("${lifecycle_rule.value.age_days}");
    expect(String(tf.variables.cold_tier?.type)).toMatch(
      /storage_class_transitions\s*=\s*optional\([\s\S]*?, \[\]\)/,
    );
    expect(tf.files["variables.tf"]).toContain(
      'contains(["NEARLINE", "COLDLINE", "ARCHIVE"], t.storage_class)',
    );
  });
});

describe("the mount: the retention job only", () => {
  it("a gcs volume of the cold bucket, read-write, and its mount at cold_tier.mount_path, in retention and no other job", () => {
    const templ = nested(jobResource, "template", "template")!;
    const volumes = nested(templ, "dynamic", "volumes")!;
    expect(jobsSelectedBy(volumes.for_each)).toEqual(["retention"]);
    expect(String(volumes.for_each)).toContain("[google_storage_bucket.cold[0].name]");
    const volume = nested(volumes, "content")!;
    expect(nested(volume, "gcs")).toEqual({ bucket: "${volumes.value}", read_only: false });

    const mounts = nested(templ, "containers", "dynamic", "volume_mounts")!;
    expect(jobsSelectedBy(mounts.for_each)).toEqual(["retention"]);
    expect(String(mounts.for_each)).toContain("[var.cold_tier.mount_path]");
    expect(nested(mounts, "content")).toEqual({ name: volume.name, mount_path: "${volume_mounts.value}" });
  });

  it("the second generation environment and the larger memory are the retention job's too", () => {
    const templ = nested(jobResource, "template", "template")!;
    expect(templ.execution_environment).toBe(
      '${local.cold && each.key == "retention" ? "EXECUTION_ENVIRONMENT_GEN2" : null}',
    );
    expect(jobsSelectedBy(templ.execution_environment)).toEqual(["retention"]);
    expect(String(tf.variables.cold_tier?.type)).toMatch(/retention_memory\s*=\s*optional\(string, "2Gi"\)/);
  });

  it("the plan refuses an exporting policy without the mount, or exporting anywhere but the mount", () => {
    expect(tf.locals.policy_export_targets).toContain("try(t.retention.export.to, null)");
    const conditions = ((nested(jobResource, "lifecycle")?.precondition ?? []) as Block[]).map((p) =>
      String(p.condition),
    );
    expect(conditions).toContain("${length(local.policy_export_targets) == 0 || local.cold}");
    expect(conditions.find((c) => c.includes("var.cold_tier.mount_path"))).toMatch(
      /for to in local\.policy_export_targets : trimsuffix\(to, "\/"\) == trimsuffix\(var\.cold_tier\.mount_path, "\/"\)/,
    );
  });
});

describe("bucket access: object permissions on that bucket only", () => {
  const ROLE = "${google_project_iam_custom_role.cold_writer[0].id}";

  it("the writer role: objects create/get/list/update/delete, nothing on buckets or IAM", () => {
    const role = resource("google_project_iam_custom_role", "cold_writer");
    expect([...(role.permissions as string[])].sort()).toEqual([
      "storage.objects.create",
      "storage.objects.delete",
      "storage.objects.get",
      "storage.objects.list",
      "storage.objects.update",
    ]);
    for (const permission of role.permissions as string[]) {
      expect(permission).not.toMatch(/^storage\.buckets\.|IamPolicy|setRetention|overrideUnlockedRetention/);
    }
  });

  it("granted to the jobs' account on the cold bucket, never on the project; the rest of the cold grants read only", () => {
    const onBucket = iamGrants(tf).filter((g) =>
      String(g.block.bucket).includes("google_storage_bucket.cold"),
    );
    expect(onBucket.map((g) => `${g.address} ${g.role}`).sort()).toEqual([
      "google_storage_bucket_iam_member.biglake_reads_cold roles/storage.objectViewer",
      `google_storage_bucket_iam_member.jobs_cold_writer ${ROLE}`,
      "google_storage_bucket_iam_member.operators_read_cold roles/storage.objectViewer",
    ]);
    expect(resource("google_storage_bucket_iam_member", "operators_read_cold").for_each).toBe(
      "${local.cold ? toset(var.operators) : toset([])}",
    );
    const writer = onBucket.find((g) => g.role === ROLE)!;
    expect(writer.block.bucket).toBe("${google_storage_bucket.cold[0].name}");
    expect(writer.members).toEqual(["serviceAccount:${google_service_account.jobs.email}"]);
    const reader = onBucket.find((g) => g.address.endsWith(".biglake_reads_cold"))!;
    expect(reader.members[0]).toContain(
      "google_bigquery_connection.cold_biglake[0].cloud_resource[0].service_account_id",
    );
    // The custom role is granted nowhere else, and no storage role at all is granted on the project.
    for (const g of iamGrants(tf)) {
      if (g.role === ROLE) expect(g.address).toBe("google_storage_bucket_iam_member.jobs_cold_writer");
      if (g.type === "google_project_iam_member") expect(g.role, g.address).not.toMatch(/storage|bigquery/);
      expect(g.role, g.address).not.toMatch(/^roles\/storage\.(admin|objectAdmin|legacy)/);
    }
  });

  it("the Cloud SQL connection's service agent connects to the one instance only", () => {
    const grant = resource("google_project_iam_member", "cold_sql_connection_client");
    expect(grant.role).toBe("roles/cloudsql.client");
    expect(grant.member).toMatch(/@gcp-sa-bigqueryconnection\.iam\.gserviceaccount\.com$/);
    expect(nested(grant, "condition")?.expression).toBe("${local.sql_instance_condition}");
    expect(grant.count).toBe("${local.cold && var.cold_tier.cloud_sql_connection ? 1 : 0}");
    // The service agent is created with the project's first Cloud SQL connection: the doc has the
    // connection made before the flag that grants the agent is set.
    const doc = readFileSync(`${ROOT}docs/cold-tier.md`, "utf8");
    const step = doc.split("**5. Optional: the Cloud SQL connection")[1]!.split("\n## ")[0]!;
    expect(step.indexOf("bq mk --connection")).toBeGreaterThan(-1);
    expect(step.indexOf("`cloud_sql_connection = true`")).toBeGreaterThan(step.indexOf("bq mk --connection"));
  });
});

describe("BigQuery: external tables over the exporter's layout", () => {
  const sample = { schema: "public", table: "telemetry_points", key_column: "ts" };
  const bucket = "acme-cold";
  /** The external table's attribute for `sample`, with the bucket and the table's locals filled in. */
  function forSample(value: unknown): string {
    return String(value)
      .replaceAll("${local.cold_bucket}", bucket)
      .replace(/\$\{each\.value\.([a-z_]+)\}/g, (_, field: string) => coldTableField(field, sample));
  }

  it("one table per cold_tier.tables entry, PARQUET, schema from the files, through the BigLake connection", () => {
    const table = resource("google_bigquery_table", "cold");
    expect(table.for_each).toBe("${local.cold ? local.cold_tables : {}}");
    const external = nested(table, "external_data_configuration")!;
    expect(external.source_format).toBe("PARQUET");
    expect(external.autodetect).toBe(true);
    // Exported DECIMAL(p,s) has p <= 38 (shared/cold/schema-map.ts): BIGNUMERIC holds every scale.
    expect(MAX_DECIMAL_PRECISION).toBe(38);
    expect(external.decimal_target_types).toEqual(["NUMERIC", "BIGNUMERIC", "STRING"]);
    expect(external.connection_id).toBe(
      "${var.cold_tier.biglake ? google_bigquery_connection.cold_biglake[0].name : null}",
    );
    expect(nested(resource("google_bigquery_connection", "cold_biglake"), "cloud_resource")).toEqual({});
    expect(resource("google_bigquery_dataset", "cold").location).toBe("${local.cold_location}");
    expect(resource("google_storage_bucket", "cold").location).toBe("${local.cold_location}");
  });

  it("the directory and Hive key come from the names exactly as layout.ts builds them", () => {
    for (const t of [sample, { schema: "ops-2", table: "Readings_v2", key_column: "bucket_ts" }]) {
      expect(coldTableField("directory", t)).toBe(tableDirectoryName({ schema: t.schema, name: t.table }));
      expect(coldTableField("hive_key", t)).toBe(hivePartitionKey(t.key_column));
    }
  });

  it("source URIs read every part file of every partition and nothing else the exporter writes", () => {
    const external = nested(resource("google_bigquery_table", "cold"), "external_data_configuration")!;
    const uris = (external.source_uris as string[]).map(forSample);
    const directory = tableDirectoryName({ schema: sample.schema, name: sample.table });
    expect(uris).toEqual([`gs://${bucket}/${directory}/*.parquet`]);
    // BigQuery's * spans "/": the pattern is a prefix and a suffix.
    const [prefix, suffix] = uris[0]!.split("*") as [string, string];
    const matches = (name: string) => name.startsWith(prefix) && name.endsWith(suffix);
    const start = 1_767_225_600_000_000n; // 2026-01-01T00:00:00Z
    const partition = path.relative(
      "/root",
      partitionDirectory("/root", {
        table: { schema: sample.schema, name: sample.table },
        keyColumn: "ts",
        startMicros: start,
      }),
    );
    const object = (file: string) => `gs://${bucket}/${partition}/${file}`;
    expect(matches(object(partFileName(0)))).toBe(true);
    expect(matches(object(partFileName(12_345)))).toBe(true);
    expect(matches(object(MANIFEST_FILE))).toBe(false);
    expect(matches(object(inProgressName(MANIFEST_FILE)))).toBe(false);
    // A part still being written, or left by a kill (on the FUSE mount a rename is a copy then a
    // delete, so a kill between the two leaves both names): never read, whatever state its
    // partition is in.
    expect(matches(object(inProgressName(partFileName(0))))).toBe(false);
    expect(matches(object(inProgressName(partFileName(12_345))))).toBe(false);
  });

  it("Hive partitioning CUSTOM: the prefix ends where <key>_start=<ISO> begins, typed TIMESTAMP", () => {
    const hive = nested(
      resource("google_bigquery_table", "cold"),
      "external_data_configuration",
      "hive_partitioning_options",
    )!;
    expect(hive.mode).toBe("CUSTOM");
    expect(hive.require_partition_filter).toBe("${var.cold_tier.require_partition_filter}");
    const prefix = forSample(hive.source_uri_prefix);
    const directory = tableDirectoryName({ schema: sample.schema, name: sample.table });
    expect(prefix).toBe(`gs://${bucket}/${directory}/{${hivePartitionKey(sample.key_column)}:TIMESTAMP}`);
    // What the exporter writes under that prefix: one level, <key>_start=<ISO 8601 UTC> (date, "T",
    // time, optional fraction, "Z"), the form the TIMESTAMP key is meant to parse; BigQuery itself
    // is not run here (docs/cold-tier.md, "Layout").
    for (const micros of [1_767_225_600_000_000n, 1_767_225_600_000_001n, -86_400_000_000n]) {
      const dir = partitionDirectory("/root", {
        table: { schema: sample.schema, name: sample.table },
        keyColumn: sample.key_column,
        startMicros: micros,
      });
      const level = path.relative(`/root/${directory}`, dir);
      expect(level).toBe(`ts_start=${isoFromEpochMicros(micros)}`);
      expect(level).toMatch(/^ts_start=\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$/);
    }
  });

  it("the name check admits exactly the names layout.ts writes unchanged", () => {
    const pattern = /can\(regex\("(\^\[A-Za-z0-9_-\]\{1,63\}\$)", name\)\)/.exec(
      tf.files["variables.tf"]!,
    )?.[1];
    expect(pattern, "variables.tf: the cold_tier.tables name check").toBeDefined();
    const allowed = new RegExp(pattern!);
    for (const name of [
      "public",
      "telemetry_points",
      "ts",
      "a-b",
      "Readings_v2",
      "a.b",
      "x y",
      "dé",
      "a/b",
      "..",
      "%41",
    ]) {
      expect(allowed.test(name), name).toBe(encodePathPart(name) === name);
    }
  });
});

describe("the docs say what the Terraform does", () => {
  const doc = () => readFileSync(`${ROOT}docs/cold-tier.md`, "utf8");
  const adr = () => readFileSync(`${ROOT}docs/adr/0006-cold-tier-bucket-access.md`, "utf8");

  it("docs/cold-tier.md's variable table gives each scalar field of cold_tier its default", () => {
    const type = String(tf.variables.cold_tier?.type);
    const defaults = [...type.matchAll(/(\w+)\s*=\s*optional\((?:bool|number|string), ([^)]+)\)/g)];
    expect(defaults.length).toBeGreaterThanOrEqual(8);
    for (const [, field, value] of defaults) {
      const row = new RegExp(
        `^\\| \`${field}\` \\| \`${value!.replace(/^"|"$/g, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\` \\|`,
        "m",
      );
      expect(doc(), `docs/cold-tier.md row for ${field}`).toMatch(row);
    }
  });

  it("the doc and ADR 0006 list the writer role's permissions, and the doc shows the layout layout.ts writes", () => {
    const role = resource("google_project_iam_custom_role", "cold_writer");
    for (const permission of role.permissions as string[]) expect(adr(), permission).toContain(permission);
    expect(doc()).toContain(role.role_id as string);
    const example = path.relative(
      "/root",
      partitionDirectory("/root", {
        table: { schema: "public", name: "telemetry_points" },
        keyColumn: "ts",
        startMicros: 1_767_225_600_000_000n,
      }),
    );
    expect(doc()).toContain(`/${example}/${partFileName(0)}`);
    expect(doc()).toContain(MANIFEST_FILE);
  });

  it("the hot-and-cold query reads PostgreSQL once, into a temporary table, and skips detaching partitions", () => {
    const section = doc().split("## Hot and cold in one query")[1]!.split("\n## ")[0]!;
    const statements = [...section.matchAll(/```sql\n([\s\S]*?)```/g)].flatMap((m) =>
      m[1]!.split(/;\s*$/m).filter((s) => s.trim() !== ""),
    );
    // BigQuery runs a WITH query once per reference, so a federated result used twice in one query
    // is two PostgreSQL statements, two snapshots; a temporary table is read as often as needed.
    const federated = statements.filter((s) => s.includes("EXTERNAL_QUERY("));
    expect(federated).toHaveLength(1);
    expect(federated[0]!).toMatch(
      /^\s*(--[^\n]*\n\s*)*CREATE TEMP TABLE hot AS\s+SELECT \* FROM EXTERNAL_QUERY\(/,
    );
    for (const s of statements) expect(s).not.toMatch(/CREATE (OR REPLACE )?VIEW/);
    // A partition being detached (DETACH ... CONCURRENTLY) is no longer read through the parent:
    // counting its range as live would take its month from neither side.
    expect(federated[0]!).toMatch(/WHERE i\.inhparent = [^\n]+\n\s+AND NOT i\.inhdetachpending\n/);
  });

  it("the doc says why the tier, once used, is not switched off", () => {
    // A bucket that holds objects is not destroyed without force_destroy, and a deleted custom
    // role's id stays taken for weeks: switching off fails half-way and blocks switching on.
    expect(resource("google_storage_bucket", "cold").force_destroy).toBe(false);
    const role = resource("google_project_iam_custom_role", "cold_writer");
    const section = doc().split("## Once used, the tier stays on")[1]?.split("\n## ")[0];
    expect(section, "docs/cold-tier.md: Once used, the tier stays on").toBeDefined();
    expect(section).toContain("`force_destroy = false`");
    expect(section).toContain(`\`${role.role_id}\``);
    expect(section).toMatch(/37 days/);
  });

  it("README.md and docs/deploy.md link docs/cold-tier.md", () => {
    expect(readFileSync(`${ROOT}README.md`, "utf8")).toContain("(docs/cold-tier.md)");
    expect(readFileSync(`${ROOT}docs/deploy.md`, "utf8")).toContain("(cold-tier.md)");
  });
});
