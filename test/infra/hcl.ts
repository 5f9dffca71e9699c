// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" strings here are Terraform and Cloud Build expressions, not JS templates.
// Reading infra/ for the infra tests: every .tf file of a folder parsed with @cdktf/hcl2json (HCL to
// JSON, offline, the same parser CDKTF uses) and merged into one document, plus the few helpers the
// tests need to follow a for_each over a local map and read a block's attributes. Expressions stay
// strings ("${each.key}"); only the references the tests rely on are resolved.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "@cdktf/hcl2json";

export type Block = Record<string, any>;

export interface TerraformDocument {
  /** resource type => resource name => block (one block per name). */
  resources: Record<string, Record<string, Block>>;
  locals: Record<string, any>;
  variables: Record<string, Block>;
  modules: Record<string, Block>;
  /** Raw text of every file, by file name, for text-level checks. */
  files: Record<string, string>;
}

export async function readTerraform(dir: string): Promise<TerraformDocument> {
  const doc: TerraformDocument = { resources: {}, locals: {}, variables: {}, modules: {}, files: {} };
  const names = readdirSync(dir)
    .filter((f) => f.endsWith(".tf"))
    .sort();
  if (names.length === 0) throw new Error(`no .tf files in ${dir}`);
  for (const name of names) {
    const text = readFileSync(join(dir, name), "utf8");
    doc.files[name] = text;
    const json = (await parse(name, text)) as Record<string, any>;
    for (const [type, byName] of Object.entries<Record<string, Block[]>>(json.resource ?? {})) {
      doc.resources[type] ??= {};
      for (const [resourceName, blocks] of Object.entries(byName)) {
        if (doc.resources[type][resourceName]) throw new Error(`${type}.${resourceName} defined twice`);
        doc.resources[type][resourceName] = single(blocks, `${type}.${resourceName}`);
      }
    }
    for (const locals of (json.locals ?? []) as Block[]) Object.assign(doc.locals, locals);
    for (const [variable, blocks] of Object.entries<Block[]>(json.variable ?? {}))
      doc.variables[variable] = single(blocks, `variable ${variable}`);
    for (const [module, blocks] of Object.entries<Block[]>(json.module ?? {}))
      doc.modules[module] = single(blocks, `module ${module}`);
  }
  return doc;
}

function single(blocks: Block[] | Block, what: string): Block {
  const list = Array.isArray(blocks) ? blocks : [blocks];
  if (list.length !== 1) throw new Error(`${what}: expected one block, found ${list.length}`);
  return list[0]!;
}

/** The first (only) nested block `name` of `block`: hcl2json represents nested blocks as lists. */
export function nested(block: Block | undefined, ...path: string[]): Block | undefined {
  let current: Block | undefined = block;
  for (const name of path) {
    const value = current?.[name];
    current = Array.isArray(value) ? value[0] : value;
  }
  return current;
}

/** Every resource of every type, as [address, block]. */
export function allResources(doc: TerraformDocument): [string, string, Block][] {
  return Object.entries(doc.resources).flatMap(([type, byName]) =>
    Object.entries(byName).map(([name, block]) => [type, name, block] as [string, string, Block]),
  );
}

/** IAM grants: every resource with a `role` and a `member` (or `members`). */
export function iamGrants(doc: TerraformDocument) {
  return allResources(doc)
    .filter(([type, , block]) => /_iam_(member|binding|policy)$/.test(type) || "role" in block)
    .map(([type, name, block]) => ({
      address: `${type}.${name}`,
      type,
      role: String(block.role ?? ""),
      members: [block.member, ...(block.members ?? [])].filter((m) => m !== undefined).map(String),
      block,
    }));
}

/** "${local.jobs}" -> "jobs"; anything else -> undefined. */
export function localReference(expression: unknown): string | undefined {
  return typeof expression === "string" ? /^\$\{local\.([a-z_]+)\}$/.exec(expression)?.[1] : undefined;
}

/**
 * Resolves the references a per-job attribute may hold, for one instance of a `for_each` over a
 * local map: ${each.key}, ${each.value.NAME} (from that map), ${var.NAME} (its default, when it has
 * one). A string with other interpolations is returned with only these replaced.
 */
export function resolveForEach(
  value: unknown,
  each: { key: string; value: Record<string, unknown> },
  variables: Record<string, Block> = {},
): unknown {
  if (Array.isArray(value)) return value.map((v) => resolveForEach(v, each, variables));
  if (typeof value !== "string") return value;
  const whole = /^\$\{(each\.value\.[a-z_]+|var\.[a-z_]+|each\.key)\}$/.exec(value)?.[1];
  if (whole) return lookup(whole, each, variables);
  return value
    .replaceAll("${each.key}", each.key)
    .replace(/\$\{each\.value\.([a-z_]+)\}/g, (_, name: string) => String(each.value[name]));
}

function lookup(
  ref: string,
  each: { key: string; value: Record<string, unknown> },
  variables: Record<string, Block>,
) {
  if (ref === "each.key") return each.key;
  if (ref.startsWith("each.value.")) {
    const resolved = each.value[ref.slice("each.value.".length)];
    return resolveForEach(resolved, each, variables);
  }
  const variable = variables[ref.slice("var.".length)];
  return variable && "default" in variable ? variable.default : `\${${ref}}`;
}
