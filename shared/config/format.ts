import type { z } from "zod";

/** One line per problem, naming the field the way the user wrote it: `tables[0].premake: ...`. */
export function formatIssues(error: z.ZodError, prefix = ""): string {
  return error.issues
    .map((issue) => {
      const path = issue.path
        .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
        .join("");
      const where = [prefix, path].filter(Boolean).join(path.startsWith("[") ? "" : ".");
      return `  - ${where || "(root)"}: ${issue.message}`;
    })
    .join("\n");
}
