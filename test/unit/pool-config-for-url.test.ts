// poolConfigForUrl: a DATABASE_URL's own options are kept ahead of the session's pins, the timeouts
// pg would send after them are dropped, and everything else in the URL is left as it was.
import { describe, expect, it } from "vitest";
import { poolConfigForUrl, sessionOptions } from "../../shared/db/session-settings.ts";

const session = sessionOptions("unit");
const config = (url: string) => poolConfigForUrl(url, session);

describe("poolConfigForUrl", () => {
  it("a URL without a query is passed as it is, with the session's options", () => {
    expect(config("postgres://u:p@h:5432/db")).toEqual({
      connectionString: "postgres://u:p@h:5432/db",
      ...session,
    });
  });

  it("the URL's options go ahead of the session's, both read as pg reads them ('+' and %20 are spaces)", () => {
    const c = config("postgres://u:p@h/db?sslmode=require&options=-c%20work_mem%3D64MB&application_name=x");
    expect(c.connectionString).toBe("postgres://u:p@h/db?sslmode=require&application_name=x");
    expect(c.options).toBe(`-c work_mem=64MB ${session.options}`);
    expect(config("postgres://h/db?options=endpoint%3Dep-1+-c+geqo%3Doff").options).toBe(
      `endpoint=ep-1 -c geqo=off ${session.options}`,
    );
  });

  it("every options parameter is kept, in order", () => {
    expect(config("postgres://h/db?options=-c%20a.b%3D1&options=-c%20a.c%3D2").options).toBe(
      `-c a.b=1 -c a.c=2 ${session.options}`,
    );
  });

  it("timeouts pg would send after the options are dropped, and so is a fragment", () => {
    const c = config(
      "postgres://h/db?statement_timeout=5&lock_timeout=1&idle_in_transaction_session_timeout=2&query_timeout=3&sslmode=disable#frag",
    );
    expect(c.connectionString).toBe("postgres://h/db?sslmode=disable");
    expect(c.options).toBe(session.options);
    expect(config("postgres://h/db?options=-c%20work_mem%3D8MB#x").options).toBe(
      `-c work_mem=8MB ${session.options}`,
    );
    expect(config("postgres://h/db?statement_timeout=5").connectionString).toBe("postgres://h/db");
  });
});
