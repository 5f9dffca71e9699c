import { z } from "zod";

/**
 * One line per problem, naming the field the way the user wrote it: `tables[0].premake: ...`.
 * With the schema that was parsed (and the issues parsed with `reportInput: true`), an unknown key
 * names the known key it most likely misspells, and a value outside an enum is echoed back with the
 * allowed values and the closest one.
 */
export function formatIssues(error: z.ZodError, prefix = "", schema?: z.ZodType): string {
  const lines: string[] = [];
  const suggested = new Set<string>();
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys" || issue.code === "invalid_union") {
      const known = schema ? knownKeys(schema, issue.path) : undefined;
      const unknown = issue.code === "unrecognized_keys" ? issue.keys : unknownUnionKeys(issue.input, known);
      if (unknown && unknown.length > 0) {
        for (const key of unknown) {
          const match = known ? closest(key, known) : undefined;
          if (match) suggested.add(pathText(prefix, [...issue.path, match]));
          lines.push(`${pathText(prefix, issue.path)}: unknown key "${key}"${hint(match, known)}`);
        }
        continue;
      }
    }
    lines.push(`${pathText(prefix, issue.path)}: ${describe(issue)}`);
  }
  // A misspelt required key also leaves the right one missing: the suggestion already says so.
  return lines
    .filter((line) => {
      const [where, what] = splitLine(line);
      return !(what === "required, not given" && suggested.has(where));
    })
    .map((line) => `  - ${line}`)
    .join("\n");
}

function splitLine(line: string): [string, string] {
  const at = line.indexOf(": ");
  return [line.slice(0, at), line.slice(at + 2)];
}

function hint(match: string | undefined, known: readonly string[] | undefined): string {
  if (match) return `; did you mean "${match}"?`;
  if (known && known.length > 0) return ` (known keys: ${known.join(", ")})`;
  return "";
}

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_value" && "input" in issue && issue.values.length > 1) {
    const allowed = issue.values.map(String);
    const given = issue.input;
    const match = typeof given === "string" ? closest(given, allowed) : undefined;
    const listed = allowed.map((v) => JSON.stringify(v)).join(", ");
    return `${JSON.stringify(given)} is not one of ${listed}${match ? `; did you mean "${match}"?` : ""}`;
  }
  if (issue.code === "invalid_type" && "input" in issue && issue.input === undefined) {
    return "required, not given";
  }
  return issue.message;
}

function pathText(prefix: string, path: readonly PropertyKey[]): string {
  const text = path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
  return [prefix, text].filter(Boolean).join(text.startsWith("[") ? "" : ".") || "(root)";
}

/** The keys an object at `path` of `schema` accepts (several objects of a union: all their keys). */
export function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] | undefined {
  const objects = objectsAt(schema, path);
  if (objects.length === 0) return undefined;
  return [...new Set(objects.flatMap((o) => Object.keys(o.shape)))];
}

function objectsAt(schema: z.ZodType, path: readonly PropertyKey[]): z.ZodObject[] {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodUnion) {
    return (inner.options as z.ZodType[]).flatMap((option) => objectsAt(option, path));
  }
  if (path.length === 0) return inner instanceof z.ZodObject ? [inner] : [];
  const [head, ...rest] = path;
  if (inner instanceof z.ZodObject && typeof head === "string") {
    const field = inner.shape[head] as z.ZodType | undefined;
    return field ? objectsAt(field, rest) : [];
  }
  if (inner instanceof z.ZodArray && typeof head === "number") {
    return objectsAt(inner.element as z.ZodType, rest);
  }
  return [];
}

/** Through .optional(), .default(), .nullable() and .transform() to the schema that checks the shape. */
function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (let i = 0; i < 20; i++) {
    if (
      current instanceof z.ZodOptional ||
      current instanceof z.ZodDefault ||
      current instanceof z.ZodNullable ||
      current instanceof z.ZodPrefault
    ) {
      current = current.unwrap() as z.ZodType;
    } else if (current instanceof z.ZodPipe) {
      current = current.in as z.ZodType;
    } else {
      break;
    }
  }
  return current;
}

function unknownUnionKeys(input: unknown, known: readonly string[] | undefined): string[] | undefined {
  if (!known || !input || typeof input !== "object" || Array.isArray(input)) return undefined;
  return Object.keys(input).filter((k) => !known.includes(k));
}

/** The candidate closest to `given` (case-insensitive edit distance), if it is close enough to be a typo. */
export function closest(given: string, candidates: readonly string[]): string | undefined {
  const wanted = given.toLowerCase();
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(wanted, candidate.toLowerCase());
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  if (!best) return undefined;
  const allowed = Math.max(1, Math.min(3, Math.floor(Math.max(given.length, best.candidate.length) / 3)));
  return best.distance <= allowed ? best.candidate : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = value;
    }
  }
  return d[a.length]![b.length]!;
}
