// What docs/deploy.md must say about the database roles: the SQL an administrator runs on Cloud SQL,
// where `postgres` is not a superuser, has to work as written.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const deployDoc = readFileSync(`${ROOT}docs/deploy.md`, "utf8");

/** The docs' SQL, statement by statement, comments dropped. */
function sqlStatements(markdown: string): string[] {
  return [...markdown.matchAll(/```sql\n([\s\S]*?)```/g)]
    .map((m) => m[1]!.replace(/--.*$/gm, ""))
    .join("\n")
    .split(";")
    .map((s) => s.replace(/\s+/g, " ").trim())
    .filter((s) => s.length > 0);
}

/** The section under a "## heading" (up to the next "## "). */
function section(heading: string): string {
  const start = deployDoc.search(new RegExp(`^## ${heading}$`, "m"));
  if (start < 0) return "";
  const rest = deployDoc.slice(start + 3);
  const end = rest.search(/^## /m);
  return end < 0 ? rest : rest.slice(0, end);
}

describe("docs/deploy.md: database roles on Cloud SQL", () => {
  it('has the section other docs link to (docs/runbooks/adopt.md: "database roles")', () => {
    expect(readFileSync(`${ROOT}docs/runbooks/adopt.md`, "utf8")).toMatch(
      /docs\/deploy\.md, "database roles"/i,
    );
    expect(section("Database roles"), "## Database roles").not.toBe("");
  });

  it("every ALTER ... OWNER TO a role is preceded by GRANT of that role to postgres and followed by its REVOKE", () => {
    const statements = sqlStatements(deployDoc);
    const owners = statements
      .map((s, i) => ({ i, owner: /^ALTER (?:TABLE|SCHEMA) .* OWNER TO ("[^"]+"|\w+)$/i.exec(s)?.[1] }))
      .filter((o): o is { i: number; owner: string } => o.owner !== undefined);
    expect(owners.length, "an ALTER TABLE ... OWNER TO in the docs' SQL").toBeGreaterThan(0);
    for (const { i, owner } of owners) {
      const grant = statements.indexOf(`GRANT ${owner} TO postgres`);
      const revoke = statements.indexOf(`REVOKE ${owner} FROM postgres`);
      expect(grant, `GRANT ${owner} TO postgres`).toBeGreaterThanOrEqual(0);
      expect(grant, `GRANT ${owner} TO postgres before the ALTER`).toBeLessThan(i);
      expect(revoke, `REVOKE ${owner} FROM postgres after the ALTER`).toBeGreaterThan(i);
    }
  });

  it("says why: postgres is not a superuser, and what the jobs' role needs for partition DDL and adoption", () => {
    const roles = section("Database roles");
    expect(roles).toMatch(/not a superuser/);
    expect(roles).toMatch(/cloudsqlsuperuser/);
    for (const needed of ["CREATE ON DATABASE", "telemetry_jobs", "ATTACH", "DETACH", "telemetry-jobs adopt"])
      expect(roles, needed).toContain(needed);
    for (const ddl of ["ADD COLUMN", "CREATE INDEX", "CREATE TRIGGER"]) expect(roles, ddl).toContain(ddl);
  });
});
