// Starts one PostgreSQL server for the whole run and prepares a migrated template database;
// each test file clones its own database from it (see database.ts), so files run in parallel.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { migrateToLatest } from "../../shared/migrate/migrator.ts";
import { startTestServer } from "./server.ts";

export const TEMPLATE_DB = "tj_template";

declare module "vitest" {
  export interface ProvidedContext {
    adminUrl: string;
    templateDb: string;
  }
}

export function databaseUrl(adminUrl: string, database: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

export default async function setup(project: TestProject) {
  const server = await startTestServer();
  console.log(`[tests] PostgreSQL from ${server.source}`);
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  const template = `${TEMPLATE_DB}_${process.pid}`;
  await admin.query(`DROP DATABASE IF EXISTS ${template}`);
  await admin.query(`CREATE DATABASE ${template}`);
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({
      pool: new pg.Pool({ connectionString: databaseUrl(server.adminUrl, template) }),
    }),
  });
  await migrateToLatest(db, { starterSchema: true });
  await db.destroy();
  project.provide("adminUrl", server.adminUrl);
  project.provide("templateDb", template);
  return async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`).catch(() => {});
    await admin.end();
    await server.stop();
  };
}
